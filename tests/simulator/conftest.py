"""The simulator served by uvicorn on a loopback port, for tests that reach it over real HTTP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from api.simulator import create_simulator_app
from core.stack.process import free_port


@pytest.fixture(scope="session")
def simulator_url() -> Iterator[str]:
    """Base URL of a simulator running in a thread (its own event loop, as a real server would be)."""
    port = free_port()
    # Listening before the server starts: early connections wait in the backlog instead of failing.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    config = uvicorn.Config(
        create_simulator_app(), log_config=None, access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="simulator", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}/simulator/v1"
    try:
        assert httpx.get(f"{base}/models", timeout=30).status_code == 200
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the simulator did not shut down"
