"""`/v1/sessions`: sessions without their agent in the path, as Everruns' current clients call them,
beside the nested routes; answers parsed with the official SDK's models."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from everruns_sdk import models as sdk
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from everloop.stack import Endpoints
from tests import factories
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.apps import app_for
from tests.factories import Client


async def _post(client: Client, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_create_names_the_agent_by_id_or_by_name(client: Client) -> None:
    agent = await factories.agent(client, name="support-bot")
    by_id = sdk.Session.model_validate(await _post(client, "/v1/sessions", {"agent_id": agent["id"]}))
    prefixed = await _post(client, "/v1/sessions", {"agent_id": f"agent_{uuid.UUID(agent['id']).hex}"})
    by_name = await _post(client, "/v1/sessions", {"agent_name": "support-bot", "title": "named"})
    assert by_id.agent_id == prefixed["agent_id"] == by_name["agent_id"] == agent["id"]
    nested = (await client.get(f"/v1/agents/{agent['id']}/sessions/{by_name['id']}")).json()
    assert nested == by_name  # one session, two addresses


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 400, "agent_id"),
        ({"agent_id": "X", "agent_name": "support-bot"}, 400, "agent_id"),
        ({"agent_id": "not-an-id"}, 400, "agent_id"),
        ({"agent_id": str(uuid.uuid4())}, 404, None),
        ({"agent_name": "nobody"}, 404, None),
        ({"agent_name": "twin"}, 400, "agent_name"),
        ({"agent_name": "retired"}, 409, None),
        ({"agent_name": "support-bot", "workspace_id": "w"}, 400, "workspace_id"),
    ],
)
async def test_create_refuses_what_names_no_single_agent(
    client: Client, body: dict[str, Any], status: int, field: str | None
) -> None:
    await factories.agent(client, name="support-bot")
    await factories.agent(client, name="twin")
    await factories.agent(client, name="twin")
    retired = await factories.agent(client, name="retired")
    assert (await client.delete(f"/v1/agents/{retired['id']}")).status_code == 204
    response = await client.post("/v1/sessions", json=body)
    assert response.status_code == status, response.text
    assert response.json().get("field") == field


async def test_list_spans_the_agents_and_filters(client: Client) -> None:
    first = await factories.agent(client, name="one")
    second = await factories.agent(client, name="two")
    a = await _post(client, "/v1/sessions", {"agent_id": first["id"], "title": "Invoice questions"})
    b = await _post(client, "/v1/sessions", {"agent_id": second["id"], "title": "Shipping"})
    c = await _post(client, "/v1/sessions", {"agent_id": second["id"], "title": "100% INVOICE"})

    async def ids(**params: Any) -> list[str]:
        response = await client.get("/v1/sessions", params=params)
        assert response.status_code == 200, response.text
        page = sdk.ListResponse.model_validate(response.json())
        return [sdk.Session.model_validate(s).id for s in page.data]

    assert await ids() == [c["id"], b["id"], a["id"]]  # newest first
    assert await ids(agent_id=second["id"]) == [c["id"], b["id"]]
    assert await ids(agent_id=f"agent_{uuid.UUID(first['id']).hex}") == [a["id"]]
    assert await ids(search="invoice") == [c["id"], a["id"]]  # any case
    assert await ids(search="100%") == [c["id"]]  # a wildcard is literal
    assert await ids(search="invoice", agent_id=first["id"]) == [a["id"]]
    assert await ids(agent_id=str(uuid.uuid4())) == []
    page = (await client.get("/v1/sessions", params={"limit": 1, "offset": 1})).json()
    assert (page["total"], page["offset"], page["limit"], [s["id"] for s in page["data"]]) == (
        3,
        1,
        1,
        [b["id"]],
    )
    assert (await client.get("/v1/sessions", params={"agent_id": "bad"})).status_code == 400


async def test_get_patch_delete_and_messages(client: Client) -> None:
    agent = await factories.agent(client)
    session = await _post(client, "/v1/sessions", {"agent_id": agent["id"]})
    path = f"/v1/sessions/{session['id']}"
    flat = (await client.get(path)).json()  # Opswald's summary fields beside Everruns' session
    assert {key: flat[key] for key in session} == session and flat["session_id"] == session["id"]
    patched = await client.patch(path, json={"title": "Renamed", "tags": ["x"]})
    assert patched.status_code == 200
    assert sdk.Session.model_validate(patched.json()).title == "Renamed"
    assert (await client.patch(path, json={"agent_id": agent["id"]})).status_code == 400  # not changeable
    assert (await client.post(f"{path}/cancel", json={})).status_code == 409  # no turn runs

    body = factories.text_message("hello")
    first = await client.post(f"{path}/messages", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201, first.text
    message = sdk.Message.model_validate(first.json())
    assert (message.role, message.content[0].text) == ("user", "hello")
    retried = await client.post(f"{path}/messages", json=body, headers={"Idempotency-Key": "k1"})
    assert retried.status_code == 201 and retried.headers["idempotent-replayed"] == "true"
    assert retried.json()["id"] == message.id
    other = factories.text_message("different")
    clash = await client.post(f"{path}/messages", json=other, headers={"Idempotency-Key": "k1"})
    assert clash.status_code == 409
    bad = await client.post(f"{path}/messages", json={"message": {"role": "user", "content": []}})
    assert bad.status_code == 400
    listed = (await client.get(f"{path}/messages")).json()
    assert [sdk.Message.model_validate(m).id for m in listed["data"]] == [message.id]
    nested = (await client.get(f"/v1/agents/{agent['id']}/sessions/{session['id']}/messages")).json()
    assert nested == listed

    assert (await client.delete(path)).status_code == 204
    assert (await client.get(path)).status_code == 404
    assert (await client.get(f"{path}/messages")).status_code == 404


async def test_unknown_sessions_are_404(client: Client) -> None:
    path = f"/v1/sessions/{uuid.uuid4()}"
    for method, suffix in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/messages"),
        ("POST", "/cancel"),
    ]:
        response = await client.request(method, path + suffix, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, suffix)
    posted = await client.post(f"{path}/messages", json=factories.text_message("x"))
    assert posted.status_code == 404


async def test_an_archived_agents_session_is_read_only_here_too(client: Client) -> None:
    agent = await factories.agent(client)
    session = await _post(client, "/v1/sessions", {"agent_id": agent["id"]})
    assert (await client.delete(f"/v1/agents/{agent['id']}")).status_code == 204
    path = f"/v1/sessions/{session['id']}"
    assert (await client.get(path)).status_code == 200
    assert (await client.post(f"{path}/messages", json=factories.text_message("x"))).status_code == 409
    assert (await client.post("/v1/sessions", json={"agent_id": agent["id"]})).status_code == 409


@pytest.fixture
async def full(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


async def test_another_users_sessions_and_agents_are_not_found(full: AsyncTestClient[Litestar]) -> None:
    alice, bob = As(full, await register(full)), As(full, await register(full))
    agent = (await alice.post("/v1/agents", {"name": "alices-agent", "system_prompt": ""})).json()
    session = (await alice.post("/v1/sessions", {"agent_id": agent["id"], "title": "private"})).json()
    me = (await alice.get("/api/auth/me")).json()
    assert session["organization_id"] == f"org_{uuid.UUID(me['id']).hex}"

    path = f"/v1/sessions/{session['id']}"
    assert (await bob.get(path)).status_code == 404
    assert (await bob.patch(path, {"title": "mine now"})).status_code == 404
    assert (await bob.get(f"{path}/messages")).status_code == 404
    assert (await bob.post(f"{path}/messages", factories.text_message("hi"))).status_code == 404
    assert (await bob.post(f"{path}/cancel", {})).status_code == 404
    assert (await bob.delete(path)).status_code == 404
    # Bob cannot open a session on Alice's agent, by id or by name, nor list hers.
    assert (await bob.post("/v1/sessions", {"agent_id": agent["id"]})).status_code == 404
    assert (await bob.post("/v1/sessions", {"agent_name": "alices-agent"})).status_code == 404
    assert (await bob.get("/v1/sessions")).json()["data"] == []
    assert (await bob.get(f"/v1/sessions?agent_id={agent['id']}")).json()["data"] == []
    # Nor take Alice's agent id for his own (an upsert of hers).
    taken = await bob.post("/v1/agents", {"name": "x", "system_prompt": "", "id": agent["id"]})
    assert taken.status_code == 409 and "private" not in taken.text
    # Alice's session is as she left it.
    mine = (await alice.get(path)).json()
    assert (mine["title"], (await alice.get(f"/v1/agents/{agent['id']}")).json()["name"]) == (
        "private",
        "alices-agent",
    )
