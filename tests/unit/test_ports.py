"""Which ports the embedded services may claim: one in TIME_WAIT yes, one another program holds no.
The managed processes themselves: tests/integration/test_process.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import psutil
import pytest

from everloop.stack import StackError
from everloop.stack.process import claim_port, free_port, wait_until


def _time_wait_on(port: int) -> bool:
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT
        for c in psutil.net_connections(kind="tcp4")
    )


@pytest.fixture
def port_in_time_wait() -> Iterator[int]:
    """A port whose last connection the server side closed first, as a stopped PostgreSQL does:
    that side keeps the connection in TIME_WAIT, on the server's port, for a minute."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _ = listener.accept()
            served.close()  # the server closes first...
            assert client.recv(1) == b""  # ...the client reads the end and closes too
    wait_until("a TIME_WAIT connection", lambda: _time_wait_on(port), timeout=5)
    yield port


def test_a_port_in_time_wait_is_free_for_the_embedded_services(port_in_time_wait: int) -> None:
    port = port_in_time_wait
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what the check did before: the port looked taken
    assert claim_port(port, "the embedded PostgreSQL", "EMBEDDED_POSTGRES_PORT") == port


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0"])
def test_a_port_a_program_listens_on_is_refused(address: str) -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers usually set it
        listener.bind((address, free_port()))
        listener.listen()
        port = int(listener.getsockname()[1])
        with pytest.raises(StackError, match=rf"^port {port} for the embedded Redis is in use by another"):
            claim_port(port, "the embedded Redis", "EMBEDDED_REDIS_PORT")


def test_a_port_bound_without_listening_is_refused() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, no SO_REUSEADDR: the kernel keeps it for this socket
        port = int(holder.getsockname()[1])
        with pytest.raises(StackError, match="in use by another program"):
            claim_port(port, "the Temporal UI", "EMBEDDED_TEMPORAL_UI_PORT")
