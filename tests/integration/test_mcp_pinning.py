"""A user's streamable-HTTP MCP server is reached at an address checked just before the
connection, never by looking its name up again (DNS rebinding), and with its own Host header."""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from capabilities import mcp
from core import net
from core.net import IPAddress, NetPolicy, resolve_public
from tests.mcp_server import serve_http

real_resolve = resolve_public


def _answer_with(monkeypatch: pytest.MonkeyPatch, resolver: Any) -> None:
    """Every look-up (the check before connecting and the pinned transport's) answers from `resolver`."""
    monkeypatch.setattr(net, "resolve_public", resolver)


def _endpoint(url: str) -> mcp.Endpoint:
    return mcp.Endpoint(server_id=uuid.uuid4(), name="s", transport="streamable_http", url=url, headers={})


async def test_the_connection_goes_to_the_checked_address_with_the_servers_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def resolve(host: str, port: int, policy: NetPolicy | None = None) -> list[IPAddress]:
        assert host == "mcp.example.test"  # a name no real resolver knows
        return [ipaddress.ip_address("127.0.0.1")]

    _answer_with(monkeypatch, resolve)
    with serve_http() as (url, recorder):
        port = urlsplit(url).port
        recorder.headers.clear()  # the start-up health probe
        # The test server may refuse a host name it does not know; what matters is that it was reached.
        with contextlib.suppress(mcp.McpUnavailable):
            await mcp.list_tools(_endpoint(f"http://mcp.example.test:{port}/mcp"), NetPolicy(), "p_")
    assert recorder.headers, "nothing reached the checked address"
    assert recorder.headers[0]["host"] == f"mcp.example.test:{port}"


async def test_a_name_that_rebinds_to_loopback_after_the_check_is_never_connected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: list[str] = []

    async def rebinding(host: str, port: int, policy: NetPolicy | None = None) -> list[IPAddress]:
        answers.append(host)
        if len(answers) == 1:  # the first look-up says: public
            return [ipaddress.ip_address("93.184.215.14")]
        return await real_resolve(host, port, policy)  # the truth: localhost is 127.0.0.1

    _answer_with(monkeypatch, rebinding)
    with serve_http() as (url, recorder):
        port = urlsplit(url).port
        recorder.headers.clear()  # the start-up health probe
        with pytest.raises(mcp.McpUnavailable, match="loopback"):
            await mcp.list_tools(_endpoint(f"http://localhost:{port}/mcp"), NetPolicy(), "p_")
    assert recorder.headers == []  # nothing reached the server
    assert len(answers) >= 2


async def test_an_address_that_does_not_answer_is_skipped_for_the_next_checked_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def two(host: str, port: int, policy: NetPolicy | None = None) -> list[IPAddress]:
        # Nothing listens on 127.0.0.2 (the server binds 127.0.0.1): that connection is refused.
        return [ipaddress.ip_address("127.0.0.2"), ipaddress.ip_address("127.0.0.1")]

    _answer_with(monkeypatch, two)
    with serve_http() as (url, recorder):
        port = urlsplit(url).port
        recorder.headers.clear()  # the start-up health probe
        with contextlib.suppress(mcp.McpUnavailable):
            await mcp.list_tools(_endpoint(f"http://mcp.example.test:{port}/mcp"), NetPolicy(), "p_")
    assert recorder.headers and recorder.headers[0]["host"] == f"mcp.example.test:{port}"
