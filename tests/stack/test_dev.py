"""`everloop dev` as a user runs it: a real process tree, real signals, data that survives."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from core import temporal
from core.db import Database
from everloop.stack.process import free_port

pytestmark = pytest.mark.stack

READY_WITHIN_S = 300  # above EVERLOOP_STARTUP_TIMEOUT below: dev says why it gave up first
ROOT = Path(__file__).resolve().parents[2]
# What `everloop dev` listens on when nothing is set (docs/settings.md).
DEFAULT_PORTS = {
    "EVERLOOP_PORT": 8000,
    "EMBEDDED_POSTGRES_PORT": 5433,
    "EMBEDDED_REDIS_PORT": 6380,
    "EMBEDDED_TEMPORAL_PORT": 7233,
    "EMBEDDED_TEMPORAL_UI_PORT": 8233,
}


class Dev:
    """One `everloop dev` process, its output in a file (a pipe could fill up and stall it)."""

    def __init__(self, data_dir: Path, api_port: int, *, default_ports: bool = False) -> None:
        """`default_ports`: every port as a user gets it (`api_port` must then be 8000), else free
        ones, so tests run beside a developer's own `make dev`."""
        self.data_dir = data_dir
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.log = data_dir.parent / f"dev-{uuid.uuid4().hex[:6]}.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "REDIS_URL", "TEMPORAL_ADDRESS", "AUTH_MODE", "TEMPORAL_UI_URL"}
            and k not in DEFAULT_PORTS
        }
        # Each part's wait is longer than a user's 60 s: `make test` starts this module first, while
        # four test processes start their own stacks on two cores, and the API and the worker then
        # import for a minute and more (a full run under load failed all three tests on that alone).
        env.update(EVERLOOP_DATA_DIR=str(data_dir), LOG_LEVEL="WARNING", EVERLOOP_STARTUP_TIMEOUT="240")
        if not default_ports:
            env.update(
                EVERLOOP_PORT=str(api_port),
                EMBEDDED_POSTGRES_PORT="0",
                EMBEDDED_REDIS_PORT="0",
                EMBEDDED_TEMPORAL_PORT="0",
                EMBEDDED_TEMPORAL_UI_PORT="0",
            )
        self.env = env
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "everloop.cli", "dev"], cwd=ROOT, env=env, stdout=out, stderr=out
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WITHIN_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"everloop dev exited with {self.process.returncode}:\n{self.output()}")
            if "everloop is ready" in self.output():
                ready = httpx.get(f"{self.api_url}/ready", timeout=5)
                assert ready.status_code == 200, ready.text
                return
            time.sleep(0.2)
        pytest.fail(f"not ready within {READY_WITHIN_S} s:\n{self.output()}")

    def banner(self, name: str) -> str:
        found = re.search(rf"^\s+{re.escape(name)}\s+(\S+)$", self.output(), flags=re.MULTILINE)
        assert found, f"{name} missing from:\n{self.output()}"
        return found.group(1)

    def tree(self) -> list[psutil.Process]:
        parent = psutil.Process(self.process.pid)
        return [parent, *parent.children(recursive=True)]

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)


def _gone(processes: list[psutil.Process], timeout: float = 20) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


@pytest.fixture
def dev_data(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "data"
    yield data_dir
    # Whatever a failed test left running: nothing may outlive the test.
    for proc in psutil.process_iter(["cmdline"]):
        if str(data_dir) in " ".join(proc.info["cmdline"] or []):
            proc.kill()


async def _write_marker(database_url: str, value: str) -> None:
    db = Database(database_url, pool_size=1)
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS dev_test_marker (value text)"))
        await conn.execute(text("INSERT INTO dev_test_marker VALUES (:v)"), {"v": value})
    await db.dispose()


async def _read_markers(database_url: str) -> list[str]:
    db = Database(database_url, pool_size=1)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT value FROM dev_test_marker"))).scalars().all()
    await db.dispose()
    return list(rows)


async def _run_stack_check(address: str) -> str:
    from core.schemas.diagnostics import StackCheckInput, StackCheckResult

    client = await temporal.connect(address, "default")
    workflow_id = f"dev-test-{uuid.uuid4().hex}"
    result = await client.execute_workflow(
        "StackCheck",
        StackCheckInput(token="x"),
        id=workflow_id,
        task_queue="everloop",
        result_type=StackCheckResult,
    )
    assert result.token == "x"
    return workflow_id


async def _workflow_status(address: str, workflow_id: str) -> str:
    client = await temporal.connect(address, "default")
    description = await client.get_workflow_handle(workflow_id).describe()
    assert description.status is not None
    return description.status.name


def test_dev_runs_everything_stops_cleanly_and_keeps_data(dev_data: Path) -> None:
    api_port = free_port()
    dev = Dev(dev_data, api_port)
    dev.wait_ready()

    # The console's URL comes first in the banner: it is where a newcomer starts.
    first = re.search(r"is ready:\n\s+(\S+)\s+(\S+)", dev.output())
    assert first and first.groups() == ("Console", f"{dev.api_url}/"), dev.output()
    assert httpx.get(dev.banner("Console"), timeout=5).status_code == 200
    _chat_with_the_demo_agent(dev.api_url)
    swagger = httpx.get(f"{dev.api_url}/swagger-ui/", timeout=5)
    assert swagger.status_code == 200 and "swagger-ui" in swagger.text
    temporal_ui = httpx.get(dev.banner("Temporal UI"), timeout=10)
    assert temporal_ui.status_code == 200
    assert dev.banner("Data directory") == str(dev_data)
    database_url = dev.banner("DATABASE_URL")
    temporal_address = dev.banner("TEMPORAL_ADDRESS")
    asyncio.run(_write_marker(database_url, "before restart"))
    workflow_id = asyncio.run(_run_stack_check(temporal_address))

    # A second `everloop dev` on the same data refuses instead of corrupting it.
    second = subprocess.run(
        [sys.executable, "-m", "everloop.cli", "dev"],
        cwd=ROOT,
        env={**dev.env, "EVERLOOP_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert "already running" in second.stderr
    assert httpx.get(f"{dev.api_url}/ready", timeout=5).status_code == 200  # the first is unharmed

    tree = dev.tree()
    names = {p.name() for p in tree}
    assert {"postgres", "redis-server", "temporal"} <= names, names
    assert dev.stop(signal.SIGINT) == 0
    assert _gone(tree) == []

    restarted = Dev(dev_data, api_port)
    restarted.wait_ready()
    database_url = restarted.banner("DATABASE_URL")
    temporal_address = restarted.banner("TEMPORAL_ADDRESS")
    assert asyncio.run(_read_markers(database_url)) == ["before restart"]
    assert asyncio.run(_workflow_status(temporal_address, workflow_id)) == "COMPLETED"
    tree = restarted.tree()
    assert restarted.stop(signal.SIGTERM) == 0
    assert _gone(tree) == []


def _chat_with_the_demo_agent(api: str) -> None:
    """The seeded agent answers through the whole stack: API, Temporal, worker, simulator (its
    tool-using mode: the arithmetic is a call to test_math's multiply, then an answer from it)."""
    agents = httpx.get(f"{api}/v1/agents", timeout=5).json()["data"]
    demo = next(a for a in agents if a["name"] == "Demo agent")
    session = httpx.post(f"{api}/v1/agents/{demo['id']}/sessions", json={}, timeout=5).json()
    base = f"{api}/v1/agents/{demo['id']}/sessions/{session['id']}"
    body = {"message": {"role": "user", "content": [{"type": "text", "text": "what is 12 times 7?"}]}}
    assert httpx.post(f"{base}/messages", json=body, timeout=5).status_code == 201
    with httpx.stream("GET", f"{base}/events", headers={"accept": "text/event-stream"}, timeout=60) as stream:
        for line in stream.iter_lines():
            if line in ("event: turn.completed", "event: turn.failed", "event: turn.cancelled"):
                assert line == "event: turn.completed"
                break
    messages = httpx.get(f"{base}/messages", timeout=5).json()["data"]
    calls = [c for m in messages if m["role"] == "agent" for c in m.get("tool_calls") or ()]
    assert [(c["name"], c["arguments"]) for c in calls] == [("multiply", {"a": 12, "b": 7})]
    assert messages[-1]["role"] == "agent"
    assert messages[-1]["content"][0]["text"] == "The result of multiply is 84."


def test_killing_dev_outright_leaves_no_process_behind(dev_data: Path) -> None:
    dev = Dev(dev_data, free_port())
    dev.wait_ready()
    tree = dev.tree()
    assert len(tree) > 5
    dev.process.kill()  # SIGKILL: no handler runs; the kernel's parent-death signal must do it
    dev.process.wait(timeout=10)
    assert _gone(tree[1:], timeout=30) == []


def _listening(port: int) -> bool:
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
        for c in psutil.net_connections(kind="inet")
    )


def _time_wait_on(port: int) -> bool:
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT
        for c in psutil.net_connections(kind="inet")
    )


def test_dev_stopped_and_started_again_at_once_on_its_default_ports(dev_data: Path) -> None:
    """The restart a developer does: Ctrl-C, then `make dev` again within the minute that the
    stopped services' connections stay in TIME_WAIT on their ports."""
    taken = [f"{name} ({port})" for name, port in DEFAULT_PORTS.items() if _listening(port)]
    if taken:
        pytest.skip(f"default ports in use by another program before the test: {', '.join(taken)}")
    dev = Dev(dev_data, DEFAULT_PORTS["EVERLOOP_PORT"], default_ports=True)
    dev.wait_ready()
    database_url = dev.banner("DATABASE_URL")
    assert f":{DEFAULT_PORTS['EMBEDDED_POSTGRES_PORT']}/" in database_url
    # A connection open while PostgreSQL stops: the server closes it first, so it is the server's
    # side, on port 5433, that stays in TIME_WAIT.
    loop = asyncio.new_event_loop()
    engine = create_async_engine(database_url, poolclass=NullPool)
    connection = loop.run_until_complete(engine.connect())
    assert loop.run_until_complete(connection.scalar(text("SELECT 1"))) == 1
    tree = dev.tree()
    try:
        assert dev.stop(signal.SIGINT) == 0
    finally:
        loop.run_until_complete(connection.invalidate())  # the server is gone: nothing to close politely
        loop.run_until_complete(engine.dispose())
        loop.close()
    assert _gone(tree) == []
    assert _time_wait_on(DEFAULT_PORTS["EMBEDDED_POSTGRES_PORT"])  # the situation under test

    restarted = Dev(dev_data, DEFAULT_PORTS["EVERLOOP_PORT"], default_ports=True)
    restarted.wait_ready()
    assert "in use by another program" not in restarted.output()
    assert restarted.banner("DATABASE_URL") == database_url
    tree = restarted.tree()
    assert restarted.stop(signal.SIGINT) == 0
    assert _gone(tree) == []
