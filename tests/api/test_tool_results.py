"""`POST .../tool-results` and `POST .../tool-approvals` route by route, against the real stack but
without a worker: a turn's `tool.call_requested` and the session's waiting status are stored
directly, as the reason step stores them (tests/loop/test_client_tools.py has whole turns). Without
a workflow to tell, a result is still stored (the update finds no workflow: the sweeper closes such
a turn)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update

from core.db import Database
from core.db.models import Event, Message, Session
from core.schemas import events as ev
from core.schemas.content import ToolCallPart
from services import events
from tests import factories

Client = AsyncTestClient[Litestar]


async def waiting_session(client: Client, db: Database, *call_ids: str) -> tuple[str, str]:
    """A session whose turn waits for the client's results of `call_ids`: (nested base, flat base)."""
    agent = await factories.agent(client)
    session = await factories.session(client, agent["id"])
    session_id = uuid.UUID(session["id"])
    requested = ev.ToolCallRequested(
        tool_calls=[ToolCallPart(id=i, name="get_location", arguments={}) for i in call_ids], timeout_s=60.0
    )
    context = {"turn_id": str(uuid.uuid4()), "input_message_id": str(uuid.uuid4())}
    async with db.session() as s:
        await events.append(
            s, session_id, requested, context=context, idempotency_key="t:1:tool.call_requested"
        )
        await s.execute(
            update(Session).where(Session.id == session_id).values(status="waitingfortoolresults")
        )
        await s.commit()
    return f"/v1/agents/{agent['id']}/sessions/{session_id}", f"/v1/sessions/{session_id}"


def answers(*results: dict[str, Any]) -> dict[str, Any]:
    return {"tool_results": list(results)}


async def stored(db: Database, call_id: str) -> tuple[list[Message], list[Event]]:
    async with db.session() as s:
        messages = (await s.execute(select(Message).where(Message.role == "tool_result"))).scalars()
        completed = (await s.execute(select(Event).where(Event.type == "tool.call_completed"))).scalars()
        return (
            [m for m in messages if m.content[0]["tool_call_id"] == call_id],
            [e for e in completed if e.data["tool_call_id"] == call_id],
        )


async def test_a_result_is_stored_once_and_the_same_one_again_is_accepted(
    client: Client, db: Database
) -> None:
    nested, flat = await waiting_session(client, db, "call_a")
    first = await client.post(
        f"{flat}/tool-results", json=answers({"tool_call_id": "call_a", "result": [1, 2]})
    )
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 1, "status": "active"}
    assert (await client.get(nested)).json()["status"] == "active"
    again = await client.post(
        f"{nested}/tool-results", json=answers({"tool_call_id": "call_a", "result": [1, 2]})
    )
    assert again.status_code == 200 and again.json()["accepted"] == 1
    other = await client.post(f"{flat}/tool-results", json=answers({"tool_call_id": "call_a", "error": "no"}))
    assert other.status_code == 409
    assert other.json()["error"] == "tool call call_a was already answered with another result"
    messages, completed = await stored(db, "call_a")
    assert len(messages) == 1 and len(completed) == 1
    assert messages[0].metadata_ is not None and messages[0].metadata_["status"] == "success"
    assert completed[0].data["status"] == "success" and completed[0].data["tool_name"] == "get_location"
    listed = (await client.get(f"{nested}/messages")).json()["data"]
    assert [m["tool_results"] for m in listed] == [
        [{"tool_call_id": "call_a", "result": [1, 2], "error": None}]
    ]


async def test_the_session_waits_until_every_call_of_the_reply_is_answered(
    client: Client, db: Database
) -> None:
    _, flat = await waiting_session(client, db, "call_a", "call_b")
    one = await client.post(f"{flat}/tool-results", json=answers({"tool_call_id": "call_a", "result": "x"}))
    assert one.json() == {"accepted": 1, "status": "waitingfortoolresults"}
    two = await client.post(
        f"{flat}/tool-results", json=answers({"tool_call_id": "call_b", "error": "failed"})
    )
    assert two.json() == {"accepted": 1, "status": "active"}
    _, completed = await stored(db, "call_b")
    assert (completed[0].data["status"], completed[0].data["error"]) == ("error", "failed")


async def test_not_waiting_is_a_409_in_the_sdks_words(client: Client, db: Database) -> None:
    nested, flat = await waiting_session(client, db, "call_a")
    session_id = uuid.UUID(flat.rsplit("/", 1)[1])
    async with db.session() as s:
        await s.execute(update(Session).where(Session.id == session_id).values(status="idle"))
        await s.commit()
    late = await client.post(f"{nested}/tool-results", json=answers({"tool_call_id": "call_a", "result": 1}))
    assert late.status_code == 409
    assert late.json()["error"] == "Session is not waiting for tool results (current status: idle)"
    assert (await stored(db, "call_a")) == ([], [])


async def test_unknown_calls_and_malformed_bodies(client: Client, db: Database) -> None:
    _, flat = await waiting_session(client, db, "call_a")
    unknown = await client.post(
        f"{flat}/tool-results", json=answers({"tool_call_id": "call_zz", "result": 1})
    )
    assert unknown.status_code == 404
    mixed = await client.post(
        f"{flat}/tool-results",
        json=answers({"tool_call_id": "call_a", "result": 1}, {"tool_call_id": "call_zz", "result": 1}),
    )
    assert mixed.status_code == 404
    assert (await stored(db, "call_a")) == ([], []), "nothing of a refused request is stored"
    twice = await client.post(
        f"{flat}/tool-results",
        json=answers({"tool_call_id": "call_a", "result": 1}, {"tool_call_id": "call_a", "result": 2}),
    )
    assert twice.status_code == 400 and twice.json()["field"] == "tool_results"
    too_many = answers(*({"tool_call_id": f"c{i}", "result": i} for i in range(65)))
    assert (await client.post(f"{flat}/tool-results", json=too_many)).status_code == 400
    wrong = await client.post(f"{flat}/tool-results", json={"tool_results": [{"tool_call_id": 7}]})
    assert wrong.status_code == 400 and "tool_call_id" in wrong.json()["field"]


async def test_batch_approvals_are_checked_before_anything_is_decided(client: Client, db: Database) -> None:
    nested, flat = await waiting_session(client, db, "call_a")
    unknown = {"decisions": [{"tool_call_id": "call_a", "decision": "allow"}]}
    assert (await client.post(f"{flat}/tool-approvals", json=unknown)).status_code == 404
    always = {"decisions": [{"tool_call_id": "call_a", "decision": "reject_always"}]}
    refused = await client.post(f"{nested}/tool-approvals", json=always)
    assert refused.status_code == 400 and refused.json()["field"] == "decisions[0].decision"
    malformed: list[dict[str, Any]] = [
        {"decisions": []},
        {"approvals": []},
        {"decisions": [{"tool_call_id": "c", "decision": "maybe"}]},
    ]
    for body in malformed:
        assert (await client.post(f"{flat}/tool-approvals", json=body)).status_code == 400, body


async def test_the_routes_are_documented(client: Client) -> None:
    spec = (await client.get("/api-doc/openapi.json")).json()
    operations = {
        operation["operationId"]: path
        for path, item in spec["paths"].items()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert operations["submitToolResultsFlat"] == "/v1/sessions/{session_id}/tool-results"
    assert operations["submitToolResults"] == "/v1/agents/{agent_id}/sessions/{session_id}/tool-results"
    assert operations["submitToolApprovalsFlat"] == "/v1/sessions/{session_id}/tool-approvals"
    assert operations["submitToolApprovals"] == "/v1/agents/{agent_id}/sessions/{session_id}/tool-approvals"
    status = spec["components"]["schemas"]["Session"]["properties"]["status"]
    assert "waitingfortoolresults" in status["enum"]
    assert "ToolCallRequestedEvent" in spec["components"]["schemas"]
