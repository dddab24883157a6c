"""Apps behind real uvicorn servers in threads, for tests whose requests wait on work done in the
test's own event loop (an in-process worker): Litestar's test client would block that loop. Also for
what needs a real server: SSE streams, a second API process, a provider or MCP server to call."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn

START_TIMEOUT_S = 30.0
KEEP_ALIVE_S = 30
STOP_TIMEOUT_S = 30.0
FINISH_TIMEOUT_S = 10.0


class _Uvicorn(uvicorn.Server):
    """Says when its start-up is over, whether it succeeded (`started`) or not."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_over = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_over.set()


class Server:
    """`app` (any ASGI app) served by uvicorn on a loopback port, in a thread with its own event loop
    (as a separate process would be); `url` is its base URL. `with` it in plain code, or `async with`
    it in a test's event loop, which then keeps running while the server starts and stops.

    It records which requests it has finished (by their X-Request-ID header), so a test can await
    the server's side of a closed request (`finished`) instead of guessing how long that takes."""

    def __init__(self, app: Any, health_path: str | None = "/health", **options: Any) -> None:
        self.app = app
        self.health_path = health_path
        self.options = {"log_config": None, "access_log": False, "timeout_graceful_shutdown": 5, **options}
        self.url = ""
        self._finished: set[str] = set()
        self._changed = threading.Condition()
        self._sock: socket.socket | None = None
        self._runner: _Uvicorn | None = None
        self._thread: threading.Thread | None = None

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode()
                with self._changed:
                    self._finished.add(request_id)
                    self._changed.notify_all()

    async def finished(self, request_id: str, timeout: float = FINISH_TIMEOUT_S) -> None:
        """Returns once the server has finished the request sent with `X-Request-ID: request_id`."""

        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: request_id in self._finished, timeout)

        assert await asyncio.to_thread(wait), f"the server did not finish request {request_id}"

    def start(self) -> None:
        # Listening before the server starts: early connections wait in the backlog instead of failing.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        # The wrapper is a bound method: uvicorn cannot tell its interface by looking.
        # Idle connections kept longer than httpx keeps them (5 s, as uvicorn's default): with equal
        # limits a client may reuse a connection just as the server closes it (a ReadError in CI).
        options = {"timeout_keep_alive": KEEP_ALIVE_S, **self.options}
        self._runner = _Uvicorn(uvicorn.Config(self._app, interface="asgi3", **options))
        self._thread = threading.Thread(
            target=self._runner.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not self._runner.startup_over.wait(0.05):
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not start within {START_TIMEOUT_S:g} s")
            if not self._runner.started:
                raise RuntimeError("the app did not start (its lifespan start-up failed)")
            if self.health_path is not None:
                health = httpx.get(f"{self.url}{self.health_path}", timeout=START_TIMEOUT_S)
                assert health.status_code == 200, health.text
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        assert self._runner is not None and self._thread is not None and self._sock is not None
        self._runner.should_exit = True
        self._thread.join(timeout=STOP_TIMEOUT_S)
        self._sock.close()
        assert not self._thread.is_alive(), "the server did not shut down"

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Server:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)


def running(app: Any, health_path: str | None = "/health", **options: Any) -> Server:
    """`app` served until the `with` (or `async with`) block ends: `with running(app) as server:`
    ... `server.url`. Once started, `health_path` (None: no check) must answer 200. `options` go to
    uvicorn's Config (e.g. `Settings.uvicorn_options()` without host and port)."""
    return Server(app, health_path, **options)
