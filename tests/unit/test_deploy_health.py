"""deploy/healthcheck.py, the image's health check, against the real stack: the API's answers to
/ready; Temporal's list of a task queue's pollers for a worker (the compose healthcheck and the
Kubernetes readiness probe of the workers); the worker's liveness file, touched from a running
worker's event loop (the Kubernetes liveness probe), in process and as the probe runs it. And how
the API stops: within API_GRACEFUL_SHUTDOWN_S, open SSE streams included."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import msgspec
from temporalio.client import Client
from temporalio.worker import Worker

from core import bus
from core.db import Database
from core.settings import Settings
from everloop.liveness import touch_forever
from everloop.stack import Endpoints
from everloop.worker import build_worker
from tests.apps import app_for
from tests.factories import Client as ApiClient
from tests.servers import running
from tests.sse import new_session

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"
HOST = socket.gethostname()  # the in-process worker's identity is pid@this host, as in a container


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load()


async def _probe(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """`python deploy/healthcheck.py ARGS` as compose and Kubernetes run it: (exit code, output)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def _until_none(ask: Callable[[], Awaitable[str | None]], timeout_s: float = 30.0) -> str | None:
    """Temporal offers no event for "a poller arrived": ask until it is there, within a deadline."""
    deadline = time.monotonic() + timeout_s
    while (problem := await ask()) is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return problem


def test_role_comes_from_the_main_process(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    for args, role in (
        (b"/app/.venv/bin/python\0/app/.venv/bin/everloop\0worker\0", "worker"),
        (b"/sbin/docker-init\0--\0everloop\0migrate\0", "migrate"),
        (b"/app/.venv/bin/python\0/app/.venv/bin/everloop\0api\0", "api"),
    ):
        cmdline.write_bytes(args)
        assert healthcheck.role_of_main_process(cmdline) == role
    assert healthcheck.role_of_main_process(tmp_path / "missing") == "api"
    assert healthcheck.main(["migrate"]) == 0  # a one-shot job has nothing to check


async def test_api_check_asks_the_readiness_route(
    settings: Settings, db: Database, endpoints: Endpoints
) -> None:
    with running(app_for(settings, configure_logs=False)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert healthcheck.check_api(port, "/ready", 5.0) is None
        assert healthcheck.check_api(port, "/health", 5.0) is None
        assert "answered 404" in healthcheck.check_api(port, "/no-such-route", 5.0)
        env = {**os.environ, **endpoints.as_env(), "EVERLOOP_PORT": str(port)}
        code, output = await _probe("api", env=env)
        assert (code, output.strip()) == (0, "healthy"), output
    assert "did not answer" in healthcheck.check_api(port, "/ready", 2.0)


async def test_worker_check_needs_this_hosts_worker_polling(
    temporal_client: Client,
    task_queue: str,
    db: Database,
    endpoints: Endpoints,
    settings: Settings,
    tmp_path: Path,
) -> None:
    namespace = temporal_client.namespace

    async def ask(host: str = HOST, stale_s: float = 150.0) -> str | None:
        problem: str | None = await healthcheck.check_worker(
            endpoints.temporal_address, namespace, task_queue, host, stale_s, 5.0
        )
        return problem

    # Nothing polls a fresh task queue.
    assert f"no worker on host {HOST!r} polls task queue" in (await ask() or "")
    env = {
        **os.environ,
        **endpoints.as_env(),
        "TEMPORAL_NAMESPACE": namespace,
        "TEMPORAL_TASK_QUEUE": task_queue,
    }
    code, output = await _probe("worker", env=env)
    assert code == 1 and "no worker on host" in output, output

    redis = bus.connect(endpoints.redis_url)
    try:
        async with build_worker(temporal_client, settings, db, redis, task_queue=task_queue) as worker:
            assert await _until_none(ask) is None
            # Another container's worker is not this one.
            assert "no worker on host 'elsewhere'" in (await ask(host="elsewhere") or "")
            # A poll older than the bound is a worker that stopped polling.
            assert "last polled task queue" in (await ask(stale_s=-5.0) or "")
            code, output = await _probe("worker", env=env)
            assert (code, output.strip()) == (0, "healthy"), output
            await _liveness_file_follows_the_running_worker(worker, env, tmp_path / "alive")
    finally:
        await redis.aclose()
    # Temporal unreachable: unhealthy, with the reason, within the probe's time.
    code, output = await _probe("worker", "--timeout", "1", env={**env, "TEMPORAL_ADDRESS": "127.0.0.1:9"})
    assert code == 1 and "cannot ask Temporal at 127.0.0.1:9" in output, output


async def _liveness_file_follows_the_running_worker(worker: Worker, env: dict[str, str], path: Path) -> None:
    """The liveness probe: the file a running worker's loop touches, not Temporal's word."""
    env = {**env, "WORKER_LIVENESS_FILE": str(path)}
    code, output = await _probe("worker", "--live", env=env)
    assert code == 1 and "no liveness file" in output, output
    alive = asyncio.create_task(touch_forever(path, worker, every_s=0.05))
    try:

        async def touched() -> str | None:
            problem: str | None = healthcheck.check_worker_alive(path, 60.0)
            return problem

        assert await _until_none(touched, 10.0) is None
        # Temporal away changes nothing here: the loop still turns.
        code, output = await _probe("worker", "--live", env={**env, "TEMPORAL_ADDRESS": "127.0.0.1:9"})
        assert (code, output.strip()) == (0, "healthy"), output
    finally:
        alive.cancel()
    # A loop that stopped touching: the file ages past the bound.
    os.utime(path, (time.time() - 120, time.time() - 120))
    assert "last touched" in (healthcheck.check_worker_alive(path, 60.0) or "")
    code, output = await _probe("worker", "--live", env=env)
    assert code == 1 and "s ago" in output, output
    await asyncio.wait_for(touch_forever(None, worker), 1)  # no path: returns at once


def test_worker_liveness_needs_its_setting() -> None:
    assert healthcheck.check_worker_alive(None, 60.0) == "WORKER_LIVENESS_FILE is not set"


async def test_api_stops_within_its_bound_with_a_stream_open(settings: Settings, client: ApiClient) -> None:
    """An SSE stream never ends by itself: uvicorn, told to stop (SIGTERM's path), closes it after
    API_GRACEFUL_SHUTDOWN_S and runs the app's shutdown, instead of waiting for the SIGKILL."""
    bounded = msgspec.structs.replace(settings, api_graceful_shutdown_s=1)
    options: dict[str, Any] = {
        k: v for k, v in bounded.uvicorn_options().items() if k not in ("host", "port")
    }
    _, events_path = await new_session(client)
    stream_path = events_path.removesuffix("/events") + "/sse"
    server = running(app_for(settings, configure_logs=False), **options)
    async with (
        server,
        httpx.AsyncClient(timeout=10) as http,
        http.stream("GET", server.url + stream_path, headers={"Accept": "text/event-stream"}) as response,
    ):
        lines = response.aiter_lines()
        assert await anext(lines) == "event: connected"
        started = time.monotonic()
        await asyncio.to_thread(server.stop)  # returns once uvicorn's thread, lifespan and all, ended
        stopped_in = time.monotonic() - started
        try:
            async for _ in lines:  # what was sent, then the end: the server closed the stream
                pass
        except httpx.RemoteProtocolError:
            pass  # closed mid-chunk: ended all the same
    assert 1.0 <= stopped_in < 6.0, stopped_in
