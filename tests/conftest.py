"""Shared fixtures: one real backing stack per test session, a clean database for every test.

The embedded PostgreSQL, Redis and Temporal start once (the same code as `everloop dev`), unless
DATABASE_URL / REDIS_URL / TEMPORAL_ADDRESS point at real services: then a throw-away database is
created on that server, and Temporal work uses unique task queues.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.client import Client

from api.simulator import create_simulator_app
from core import temporal
from core.db import Database
from core.db.engine import async_url
from core.db.models import Base
from core.migrate import upgrade
from core.settings import AuthMode, Settings, load_settings
from everloop.stack import EmbeddedStack, Endpoints
from tests.apps import app_for
from tests.servers import running

if TYPE_CHECKING:
    from tests.workers import Workers

_exit_status = 0

# The longest modules (measured with `make test ARGS=--durations=80`), longest first. xdist's
# `--dist loadfile` sorts modules by their number of tests (its default `--loadscope-reorder`), a
# stable sort, so this order only ranks modules with as many tests. Handing these out first for
# real (`--no-loadscope-reorder`) was slower: 20:30 against 17:58, the kill and chaos modules
# running at once and slowing each other (Makefile).
# A module missing here only runs in its usual place.
LONGEST_FIRST = (
    "tests/chaos/test_processes.py",
    "tests/stack/test_dev.py",
    "tests/chaos/test_postgres.py",
    "tests/api/test_models_llmsim.py",
    "tests/loop/test_webhooks.py",
    "tests/console/test_operators.py",
    "tests/console/test_chat.py",
    "tests/loop/test_client_tools.py",
    "tests/loop/test_replay_mutations.py",
    "tests/loop/test_tool_approval.py",
    "tests/loop/test_golden.py",
    "tests/loop/test_turn_traces.py",
    "tests/console/test_builder.py",
    "tests/loop/test_fork_worker_killed.py",
    "tests/workflows/test_drift.py",
    "tests/api/test_drift.py",
    "tests/clients/test_sdk.py",
    "tests/simulator/test_agent_mode.py",
    "tests/loop/test_stream_resume.py",
    "tests/integration/test_rotate_secrets.py",
    "tests/unit/test_deploy_checkov.py",
    "tests/loop/test_mcp_tools.py",
    "tests/integration/test_cli.py",
    "tests/api/test_v2_knowledge.py",
    "tests/api/test_auth_full.py",
    "tests/loop/test_crash.py",
    "tests/workflows/test_turn_end.py",
    "tests/loop/test_forks.py",
    "tests/loop/test_message_order.py",
    "tests/loop/test_session_times.py",
    "tests/api/test_ui_contract.py",
    "tests/workflows/test_session_control.py",
    "tests/loop/test_otlp_export.py",
)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    root = config.rootpath
    # A stable sort: the same order on every xdist worker, as xdist requires.
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(rank)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        # An xdist worker: its last reports may still be on their way to the controller (execnet
        # sends from a thread), so it must end normally; the controller's own exit is below.
        return
    # The Temporal client's Rust threads can abort the interpreter while it finalizes
    # (temporalio/sdk-python#300). Everything is reported by now: leave without finalizing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)


def _admin_url(url: str) -> str:
    base, _, _ = async_url(url).rpartition("/")
    return f"{base}/postgres"


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A directory of the test's own, as pytest's, but under the system's temporary directory.
    Run as root, the embedded PostgreSQL runs as another user, who must be able to reach its data
    directory; pytest's own lives under /tmp/pytest-of-<user>, which every pytest that starts sets
    back to 0700 (a security fix of pytest's), and an initdb running at that moment failed with
    "Permission denied" (a helper's pytest started beside the suite)."""
    with tempfile.TemporaryDirectory(prefix="everloop-test-tmp-", ignore_cleanup_errors=True) as path:
        yield Path(path)


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    with tempfile.TemporaryDirectory(prefix="everloop-test-") as data_dir:
        env = {
            "EVERLOOP_DATA_DIR": data_dir,
            "EMBEDDED_POSTGRES_PORT": "0",
            "EMBEDDED_REDIS_PORT": "0",
            "EMBEDDED_TEMPORAL_PORT": "0",
            "EMBEDDED_TEMPORAL_UI_PORT": "0",
        }
        for name in ("DATABASE_URL", "REDIS_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        stack = EmbeddedStack(load_settings(env), durable=False)
        started = stack.start()
        external_db = bool(os.environ.get("DATABASE_URL"))
        database_url = started.database_url
        if external_db:
            name = f"everloop_test_{uuid.uuid4().hex[:12]}"
            asyncio.run(_admin(database_url, f'CREATE DATABASE "{name}"'))
            database_url = f"{async_url(database_url).rpartition('/')[0]}/{name}"
        try:
            upgrade(database_url)
            yield msgspec.structs.replace(started, database_url=database_url)
        finally:
            if external_db:
                asyncio.run(_admin(started.database_url, f'DROP DATABASE "{name}" WITH (FORCE)'))
            stack.stop()


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(_admin_url(url), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(statement))
    await engine.dispose()


TEST_MASTER_KEY = base64.b64encode(b"k" * 32).decode()


def make_settings(endpoints: Endpoints, **env: str) -> Settings:
    base = {
        "EVERLOOP_DATA_DIR": str(Path(tempfile.gettempdir()) / "everloop-test-settings"),
        "AUTH_MODE": AuthMode.NONE.value,
        "SECRETS_ENCRYPTION_KEY": TEST_MASTER_KEY,
        "EVERLOOP_SIMULATOR": "true",
        # Litestar's test client calls itself testserver.local; AUTH_MODE=none answers only
        # loopback names and these.
        "EVERLOOP_ALLOWED_HOSTS": "testserver.local",
        **endpoints.as_env(),
    }
    return load_settings({**base, **env})


@pytest.fixture(scope="session")
def settings(endpoints: Endpoints) -> Settings:
    return make_settings(endpoints)


async def truncate_all(database: Database) -> None:
    """Empties every table: what a test (or a module-scoped stack) stored must not reach the next."""
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    async with database.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def db(endpoints: Endpoints) -> AsyncIterator[Database]:
    database = Database(endpoints.database_url, pool_size=2)
    try:
        yield database
    finally:
        await truncate_all(database)
        await database.dispose()


@pytest.fixture
def app(settings: Settings, db: Database) -> Litestar:
    return app_for(settings, configure_logs=False)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def temporal_client(endpoints: Endpoints) -> Client:
    namespace = os.environ.get("TEMPORAL_NAMESPACE") or "default"
    return await temporal.connect(endpoints.temporal_address, namespace)


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def workers(endpoints: Endpoints, task_queue: str, tmp_path: Path) -> Iterator[Workers]:
    """`everloop worker` processes on the test's task queue, for tests that kill one mid-turn; all
    stopped at the end."""
    from tests.workers import Workers, worker_env  # imported here: tests.workers reads this module

    pool = Workers(worker_env(make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)), tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(scope="session")
def simulator_url() -> Iterator[str]:
    """Base URL of a simulator running in a thread (its own event loop, as a real server would be)."""
    with running(create_simulator_app(), health_path="/simulator/v1/models") as server:
        yield f"{server.url}/simulator/v1"
