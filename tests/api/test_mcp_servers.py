"""MCP servers over HTTP: CRUD with write-only encrypted headers, tool listing and refresh against
real MCP servers (streamable HTTP on loopback, stdio as a subprocess), who may see and change what,
and the `mcp:{id}` capability in the catalogue and in agents' configuration checks."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from core.db import Database
from core.db.models import McpServer
from everloop.stack import Endpoints
from tests.api.test_auth_full import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    As,
    clear_rate_limits,
    full_settings,
    register,
)
from tests.apps import app_for
from tests.mcp_server import serve_http, stdio_command

SECRET = "Bearer s3cret-value-9a1f"
# A public address: users' servers must be on one. Nothing needs to answer there.
# Nothing listens there; users may name it only because these tests set OUTBOUND_ALLOW_LOOPBACK.
CLOSED_URL = "http://127.0.0.1:9/mcp"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"


async def created(client: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = await client.post("/v1/mcp-servers", json=body, headers=headers or {})
    assert response.status_code == 201, response.text
    server: dict[str, Any] = response.json()
    return server


def tool_names(server: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["remote_name"] for t in server["tools"]}


async def test_http_server_crud_with_secret_headers(client: AsyncTestClient[Litestar], db: Database) -> None:
    with serve_http() as (url, recorder):
        server = await created(
            client,
            {
                "name": "tools",
                "transport": "streamable_http",
                "url": url,
                "headers": {"Authorization": SECRET, "X-Team": "blue"},
            },
        )
        # The server got the headers...
        assert any(h.get("authorization") == SECRET and h.get("x-team") == "blue" for h in recorder.headers)
    # ...and the API never gives them back.
    assert SECRET not in str(server) and "blue" not in str(server)
    assert server["header_names"] == ["Authorization", "X-Team"]
    assert server["capability_id"] == f"mcp:{server['id']}" and server["shared"] is True
    assert server["tools_error"] is None and server["tools_refreshed_at"] is not None
    names = tool_names(server)
    assert names["add"] == "add" and names["lookup_v2"] == "lookup.v2"
    add = next(t for t in server["tools"] if t["name"] == "add")
    assert add["parameters"]["properties"].keys() == {"a", "b"} and add["description"] == "Adds two integers."
    async with db.session() as s:
        row = (await s.execute(select(McpServer))).scalar_one()
        assert row.headers_encrypted is not None and b"s3cret" not in row.headers_encrypted

    path = f"/v1/mcp-servers/{server['id']}"
    for response in (await client.get(path), await client.get("/v1/mcp-servers")):
        assert response.status_code == 200 and SECRET not in response.text
    assert (await client.get("/v1/mcp-servers")).json()["total"] == 1

    # A new prefix renames the cached tools (the server is not asked: it is gone by now).
    renamed = (await client.patch(path, json={"tool_prefix": "t_", "name": "renamed"})).json()
    assert tool_names(renamed)["t_add"] == "add" and renamed["name"] == "renamed"
    # Moving the headers to another host needs them restated.
    moved = await client.patch(path, json={"url": "http://127.0.0.1:1/mcp"})
    assert moved.status_code == 400 and moved.json()["field"] == "headers"
    assert (await client.patch(path, json={"command": "ls"})).status_code == 400
    assert (await client.patch(path, json={"surprise": 1})).status_code == 400

    assert (await client.delete(path)).status_code == 204
    assert (await client.get(path)).status_code == 404


async def test_stdio_server_and_the_capability(client: AsyncTestClient[Litestar]) -> None:
    server = await created(client, {"name": "local", "transport": "stdio", **stdio_command()})
    assert server["tools_error"] is None, server["tools_error"]
    assert {"add", "shout", "lookup_v2", "fail", "hang", "die"} <= set(tool_names(server))
    assert server["command"] == stdio_command()["command"] and server["url"] is None

    capability_id = server["capability_id"]
    listed = (await client.get("/v1/capabilities", params={"limit": 200})).json()
    assert capability_id in [c["id"] for c in listed["data"]]
    one = (await client.get(f"/v1/capabilities/{capability_id}")).json()
    assert one["category"] == "mcp" and one["name"] == "local"
    assert {d["name"] for d in one["tool_definitions"]} == set(tool_names(server))
    assert (await client.get(f"/v1/capabilities/mcp:{uuid.uuid4()}")).status_code == 404

    # Enabling it checks tool names against the other capabilities: test_math has `add` too.
    conflict = await client.post(
        "/v1/agents", json={"name": "a", "capabilities": [capability_id, "test_math"]}
    )
    assert conflict.status_code == 400 and "add (" in conflict.json()["error"]
    agent = await client.post(
        "/v1/agents", json={"name": "a", "capabilities": [capability_id, "current_time"]}
    )
    assert agent.status_code == 201, agent.text
    unknown = await client.put(
        f"/v1/agents/{agent.json()['id']}/capabilities", json={"capabilities": [f"mcp:{uuid.uuid4()}"]}
    )
    assert unknown.status_code == 400 and "unknown capability" in unknown.json()["error"]
    bad_config = await client.put(
        f"/v1/agents/{agent.json()['id']}/capabilities",
        json={"capabilities": [{"id": capability_id, "config": {"nope": 1}}]},
    )
    assert bad_config.status_code == 400
    # With a prefix the names no longer collide.
    await client.patch(f"/v1/mcp-servers/{server['id']}", json={"tool_prefix": "local_"})
    both = await client.put(
        f"/v1/agents/{agent.json()['id']}/capabilities", json={"capabilities": [capability_id, "test_math"]}
    )
    assert both.status_code == 200, both.text

    # An agent enables it: it stays until the agent lets go.
    in_use = await client.delete(f"/v1/mcp-servers/{server['id']}")
    assert in_use.status_code == 409 and "agent 'a'" in in_use.json()["error"]
    await client.put(f"/v1/agents/{agent.json()['id']}/capabilities", json={"capabilities": []})
    assert (await client.delete(f"/v1/mcp-servers/{server['id']}")).status_code == 204


async def test_validation(client: AsyncTestClient[Litestar]) -> None:
    for body, field in (
        ({"name": "x", "transport": "streamable_http"}, "url"),
        ({"name": "x", "transport": "stdio"}, "command"),
        ({"name": "x", "transport": "stdio", "command": "ls", "url": "http://127.0.0.1/"}, "url"),
        (
            {"name": "x", "transport": "streamable_http", "url": "http://127.0.0.1/", "command": "ls"},
            "command",
        ),
        ({"name": "x", "transport": "streamable_http", "url": "ftp://example.com/"}, "url"),
        (
            {"name": "x", "transport": "streamable_http", "url": "http://h/", "tool_prefix": "a b"},
            "tool_prefix",
        ),
        ({"name": "x", "transport": "streamable_http", "url": "http://h/", "timeout_s": 600}, "timeout_s"),
        ({"name": "x", "transport": "streamable_http", "url": "http://h/", "headers": {"A": "x\ny"}}, None),
    ):
        response = await client.post("/v1/mcp-servers", json=body)
        assert response.status_code == 400, (body, response.text)
        if field:
            assert field in response.json().get("field", ""), (body, response.json())


async def test_a_server_that_is_down_is_added_and_refresh_keeps_the_cache(
    client: AsyncTestClient[Litestar],
) -> None:
    down = await created(client, {"name": "down", "transport": "streamable_http", "url": closed_port_url()})
    assert down["tools"] == [] and down["tools_refreshed_at"] is None
    assert "listing the tools failed" in down["tools_error"]

    with serve_http() as (url, _):
        server = await created(client, {"name": "up", "transport": "streamable_http", "url": url})
        listed_at = server["tools_refreshed_at"]
        again = await client.post(f"/v1/mcp-servers/{server['id']}/refresh")
        assert again.status_code == 200 and again.json()["tools_refreshed_at"] > listed_at
    # The server is gone: refresh is a 502, and the cached tools stay for turns to use.
    gone = await client.post(f"/v1/mcp-servers/{server['id']}/refresh")
    assert gone.status_code == 502 and "MCP server 'up'" in gone.json()["error"]
    kept = (await client.get(f"/v1/mcp-servers/{server['id']}")).json()
    assert tool_names(kept) == tool_names(server) and kept["tools_error"]

    # Pointing it at a server that answers lists the tools again.
    with serve_http() as (url, _):
        moved = await client.patch(f"/v1/mcp-servers/{server['id']}", json={"url": url})
    assert moved.status_code == 200 and moved.json()["tools_error"] is None


@pytest.fixture
async def full_client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    settings = full_settings(endpoints, MCP_LIST_TIMEOUT="3", OUTBOUND_ALLOW_LOOPBACK="true")
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as test_client:
        yield test_client


async def test_owners_shared_and_private_servers(full_client: AsyncTestClient[Litestar]) -> None:
    client = full_client
    login = await client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    admin = As(client, login.json())
    alice, bob = As(client, await register(client)), As(client, await register(client))

    # Users: no stdio (it runs a command on the workers), no loopback or private addresses.
    stdio = await alice.post("/v1/mcp-servers", {"name": "x", "transport": "stdio", **stdio_command()})
    assert stdio.status_code == 403
    for url in ("http://10.1.2.3/mcp", "http://169.254.169.254/mcp", "http://[fd00::1]/mcp"):
        refused = await alice.post(
            "/v1/mcp-servers", {"name": "x", "transport": "streamable_http", "url": url}
        )
        assert refused.status_code == 400 and refused.json()["field"] == "url", refused.text

    private = await created(
        client,
        {"name": "alice's", "transport": "streamable_http", "url": CLOSED_URL, "headers": {"X-Key": "k"}},
        alice.headers,
    )
    assert private["shared"] is False and private["url"] == CLOSED_URL and private["tools_error"]
    with serve_http() as (url, _):
        shared = await created(
            client, {"name": "shared", "transport": "streamable_http", "url": url}, admin.headers
        )

    # Bob: Alice's server does not exist for him, in the API or as a capability.
    path = f"/v1/mcp-servers/{private['id']}"
    assert (await bob.get(path)).status_code == 404
    assert (await bob.patch(path, {"name": "mine"})).status_code == 404
    assert (await bob.post(f"{path}/refresh", {})).status_code == 404
    assert (await client.delete(path, headers=bob.headers)).status_code == 404
    assert [s["id"] for s in (await bob.get("/v1/mcp-servers")).json()["data"]] == [shared["id"]]
    assert (await bob.get(f"/v1/capabilities/{private['capability_id']}")).status_code == 404
    catalogue = (await bob.get("/v1/capabilities?limit=200")).text
    assert private["capability_id"] not in catalogue and shared["capability_id"] in catalogue
    taken = await bob.post("/v1/agents", {"name": "b", "capabilities": [private["capability_id"]]})
    assert taken.status_code == 400

    # The shared server: usable and readable by users (not where it is), changed only by admins.
    seen = (await bob.get(f"/v1/mcp-servers/{shared['id']}")).json()
    assert seen["url"] is None and seen["tools"] == shared["tools"] and seen["shared"] is True
    assert (await bob.patch(f"/v1/mcp-servers/{shared['id']}", {"name": "mine"})).status_code == 403
    assert (await bob.post(f"/v1/mcp-servers/{shared['id']}/refresh", {})).status_code == 403
    assert (await client.delete(f"/v1/mcp-servers/{shared['id']}", headers=bob.headers)).status_code == 403
    agent = await bob.post("/v1/agents", {"name": "b", "capabilities": [shared["capability_id"]]})
    assert agent.status_code == 201, agent.text

    # Alice may change her own, and only to public addresses.
    assert (await alice.patch(path, {"name": "still mine"})).status_code == 200
    moved = await alice.patch(path, {"url": "http://10.0.0.9/mcp", "headers": {}})
    assert moved.status_code == 400 and moved.json()["field"] == "url"
