from __future__ import annotations

import uuid

from sqlalchemy import func, select

from core.db import Database
from core.db.models import Event, Message
from tests import factories
from tests.factories import Client


async def test_session_lifecycle(client: Client) -> None:
    agent = await factories.agent(client)
    created = await factories.session(client, agent["id"], title="First", tags=["x"])
    assert created["status"] == "started"
    assert created["agent_id"] == agent["id"]
    assert created["usage"] == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cost": 0.0}
    base = f"/v1/agents/{agent['id']}/sessions"
    assert (await client.get(f"{base}/{created['id']}")).json() == created
    patched = await client.patch(f"{base}/{created['id']}", json={"title": "Renamed"})
    assert patched.json()["title"] == "Renamed" and patched.json()["tags"] == ["x"]
    second = await factories.session(client, agent["id"])
    listing = (await client.get(base)).json()
    assert [s["id"] for s in listing["data"]] == [second["id"], created["id"]]
    assert listing["total"] == 2


async def test_a_session_under_the_wrong_agent_is_404(client: Client) -> None:
    owner = await factories.agent(client)
    other = await factories.agent(client, name="Other")
    session = await factories.session(client, owner["id"])
    wrong = f"/v1/agents/{other['id']}/sessions/{session['id']}"
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, wrong, json={} if method == "PATCH" else None)
        assert response.status_code == 404, method
    assert (await client.get(f"{wrong}/messages")).status_code == 404
    assert (await client.post(f"{wrong}/messages", json=factories.text_message("x"))).status_code == 404
    assert (await client.get(f"/v1/agents/{uuid.uuid4()}/sessions")).status_code == 404


async def test_session_model_must_exist(client: Client) -> None:
    agent = await factories.agent(client)
    response = await client.post(f"/v1/agents/{agent['id']}/sessions", json={"model_id": str(uuid.uuid4())})
    assert response.status_code == 400 and response.json()["field"] == "model_id"
    response = await client.post(f"/v1/agents/{agent['id']}/sessions", json={"title": 5})
    assert response.status_code == 400 and response.json()["field"] == "title"


async def test_delete_removes_messages_and_events(client: Client, db: Database) -> None:
    agent = await factories.agent(client)
    session = await factories.session(client, agent["id"])
    base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
    await client.post(f"{base}/messages", json=factories.text_message("hello"))
    sid = uuid.UUID(session["id"])

    async def count(model: type[Message] | type[Event]) -> int:
        async with db.session() as s:
            return int((await s.execute(select(func.count()).where(model.session_id == sid))).scalar_one())

    assert (await count(Message), await count(Event)) == (1, 1)
    assert (await client.delete(base)).status_code == 204
    assert (await client.get(base)).status_code == 404
    assert (await count(Message), await count(Event)) == (0, 0)
