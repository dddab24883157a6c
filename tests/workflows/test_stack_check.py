"""StackCheck through a real Temporal server and worker, and saved histories through `Replayer`."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory

from core import bus
from core.db import Database
from core.schemas.diagnostics import StackCheckInput, StackCheckResult
from core.settings import Settings
from everloop.stack import Endpoints
from everloop.worker import WORKFLOWS, build_worker
from tests.replaying import replay
from workflows.diagnostics import StackCheckWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def test_stack_check_reaches_postgres_and_redis_from_the_worker(
    temporal_client: Client, task_queue: str, db: Database, endpoints: Endpoints, settings: Settings
) -> None:
    redis = bus.connect(endpoints.redis_url)
    workflow_id = f"stack-check-{uuid.uuid4().hex}"
    try:
        async with build_worker(temporal_client, settings, db, redis, task_queue=task_queue):
            result = await temporal_client.execute_workflow(
                StackCheckWorkflow.run,
                StackCheckInput(token="t-42"),
                id=workflow_id,
                task_queue=task_queue,
            )
    finally:
        await redis.aclose()
    assert isinstance(result, StackCheckResult)
    assert result.token == "t-42"
    assert result.task_queue == task_queue
    assert result.postgres_version.split(".")[0].isdigit()
    assert result.redis_version.split(".")[0].isdigit()

    history = await temporal_client.get_workflow_handle(workflow_id).fetch_history()
    await replay(history, WORKFLOWS)
    if os.environ.get("EVERLOOP_RECORD_HISTORIES"):
        (HISTORIES / "stack_check.json").write_text(history.to_json())


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_saved_histories_replay_with_todays_code(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await replay(history, WORKFLOWS)
    assert result.replay_failure is None
