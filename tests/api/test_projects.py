"""Projects and project keys (001) on the real stack with full auth: the default project listed,
keys shown once and listed by prefix, rotation ending earlier keys at once, and a project key opening
its own project's trace routes and nothing else."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from everloop.stack import Endpoints
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.apps import app_for

KEY = re.compile(r"^vgl_[0-9a-f]{64}$")


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


def keyed(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_projects_list_create_get(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    listed = (await alice.get("/v1/projects")).json()
    assert listed["total"] == 1 and listed["projects"][0]["is_default"] is True
    assert listed["projects"][0]["name"] == "Default"

    made = await alice.post("/v1/projects", {"name": "My Project", "description": "Optional"})
    assert made.status_code == 201, made.text
    project = made.json()
    assert KEY.match(project["api_key"])
    assert project["keys"][0]["prefix"] == project["api_key"][:12] and project["keys"][0]["active"]
    assert project["description"] == "Optional" and project["is_default"] is False

    shown = (await alice.get(f"/v1/projects/{project['id']}")).json()
    assert "api_key" not in shown and project["api_key"] not in str(shown)
    assert shown["keys"] == project["keys"]
    listed = (await alice.get("/v1/projects")).json()
    assert listed["total"] == 2 and [p["name"] for p in listed["projects"]] == ["Default", "My Project"]

    bad = await alice.post("/v1/projects", {"name": "x", "colour": "red"})
    assert bad.status_code == 400 and bad.json()["status"] == 400 and "colour" in bad.json()["error"]
    assert (await alice.post("/v1/projects", {"name": "  "})).json()["field"] == "name"


async def test_other_accounts_projects_are_absent(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    bob = As(client, await register(client))
    project = (await alice.post("/v1/projects", {"name": "alice's"})).json()
    assert (await bob.get(f"/v1/projects/{project['id']}")).status_code == 404
    assert (await bob.post(f"/v1/projects/{project['id']}/rotate-key", {})).status_code == 404
    assert "alice's" not in (await bob.get("/v1/projects")).text
    missing = await bob.get("/v1/projects/00000000-0000-7000-8000-0000000000ff")
    assert missing.json() == {"error": "project not found", "status": 404}


async def test_rotation_ends_earlier_keys_at_once(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    project = (await alice.post("/v1/projects", {"name": "rotating"})).json()
    first = project["api_key"]
    assert (await client.get("/v1/traces", headers=keyed(first))).status_code == 200

    rotated = await alice.post(f"/v1/projects/{project['id']}/rotate-key", {})
    assert rotated.status_code == 201
    second = rotated.json()["key"]
    assert KEY.match(second) and second != first
    assert (await client.get("/v1/traces", headers=keyed(first))).status_code == 401
    assert (await client.get("/v1/traces", headers=keyed(second))).status_code == 200
    keys = (await alice.get(f"/v1/projects/{project['id']}")).json()["keys"]
    assert [(k["prefix"], k["active"]) for k in keys] == [(second[:12], True), (first[:12], False)]


async def test_a_project_key_opens_only_trace_routes(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    key = (await alice.post("/v1/projects", {"name": "keyed"})).json()["api_key"]
    for path in ("/v1/agents", "/v1/projects", "/api/auth/me", "/v1/sessions", "/api/auth/api-keys"):
        response = await client.get(path, headers=keyed(key))
        assert response.status_code == 403, (path, response.text)
        assert response.json()["status"] == 403
    made = await client.post("/v1/projects", json={"name": "x"}, headers=keyed(key))
    assert made.status_code == 403
    assert (await client.get("/v1/spans", headers=keyed(key))).status_code == 200
    # A key-shaped string that is no key, and a malformed one, are 401.
    assert (await client.get("/v1/traces", headers=keyed("vgl_" + "0" * 64))).status_code == 401
    assert (await client.get("/v1/traces", headers=keyed("vgl_short"))).status_code == 401
