"""Apps behind real uvicorn servers in threads, for tests whose requests wait on work done in the
test's own event loop (an in-process worker): Litestar's test client would block that loop."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn


@contextmanager
def running(app: Any, health_path: str = "/health", **options: Any) -> Iterator[str]:
    """Serves `app` (any ASGI app) on a loopback port until the block ends; yields its base URL.
    `options` go to uvicorn's Config (e.g. `Settings.uvicorn_options()` without host and port)."""
    # Listening before the server starts: early connections wait in the backlog instead of failing.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, **{"log_config": None, "access_log": False, "timeout_graceful_shutdown": 5, **options}
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(f"{base}{health_path}", timeout=30).status_code == 200
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the server did not shut down"
