"""GET .../events without `Accept: text/event-stream`: the stored events as a JSON list."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from core.db import Database
from tests import factories
from tests.factories import Client
from tests.sse import new_session, store


async def _types(client: Client, path: str, **params: Any) -> list[str]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return [e["type"] for e in response.json()["data"]]


async def test_stored_events_in_order_of_sequence(client: Client, db: Database) -> None:
    session_id, path = await new_session(client)
    messages = path.removesuffix("/events") + "/messages"
    posted = (await client.post(messages, json=factories.text_message("hi"))).json()
    step = await store(db, session_id, "turn.started", turn_id="t1")
    response = await client.get(path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["total"], body["offset"], body["limit"]) == (2, 0, 50)
    first, second = body["data"]
    assert (first["type"], first["sequence"], second["type"], second["sequence"]) == (
        "message.user",
        1,
        "turn.started",
        2,
    )
    assert first["data"]["message"]["id"] == posted["id"]
    assert first["context"]["input_message_id"] == posted["id"]
    assert first["session_id"] == str(session_id)
    assert second == {
        "id": str(step.id),
        "type": "turn.started",
        "ts": second["ts"],
        "session_id": str(session_id),
        "sequence": 2,
        "context": {"turn_id": None, "input_message_id": None, "exec_id": None},
        "data": {"turn_id": "t1"},
        "metadata": None,
        "tags": [],
    }


async def test_json_is_the_answer_unless_the_stream_is_asked_for(client: Client, db: Database) -> None:
    session_id, path = await new_session(client)
    await store(db, session_id)
    for accept in ("application/json", "*/*", "text/html, application/json;q=0.9"):
        response = await client.get(path, headers={"Accept": accept})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["vary"] == "Accept"
        assert response.json()["total"] == 1


async def test_since_id_returns_the_events_after_it(client: Client, db: Database) -> None:
    session_id, path = await new_session(client)
    stored = [await store(db, session_id, f"step.{i}") for i in range(5)]
    body = (await client.get(path, params={"since_id": str(stored[1].id)})).json()
    assert [e["sequence"] for e in body["data"]] == [3, 4, 5]
    assert body["total"] == 3
    last = (await client.get(path, params={"since_id": str(stored[-1].id)})).json()
    assert (last["data"], last["total"]) == ([], 0)


async def test_an_unknown_since_id_is_a_400_naming_it(client: Client, db: Database) -> None:
    session_id, path = await new_session(client)
    await store(db, session_id)
    other_id, _ = await new_session(client)
    elsewhere = await store(db, other_id)
    for since_id in (str(uuid.uuid4()), str(elsewhere.id), "not-a-uuid"):
        response = await client.get(path, params={"since_id": since_id})
        assert response.status_code == 400, (since_id, response.text)
        assert response.json()["field"] == "since_id"


async def test_types_and_exclude_filter_by_event_type(client: Client, db: Database) -> None:
    session_id, path = await new_session(client)
    for type_ in ("turn.started", "llm.generation", "message.agent", "turn.completed", "llm.generation"):
        await store(db, session_id, type_)
    assert await _types(client, path, types="turn.started,turn.completed") == [
        "turn.started",
        "turn.completed",
    ]
    repeated = await _types(client, path, types=["message.agent", "turn.started"])
    assert repeated == ["turn.started", "message.agent"]
    assert await _types(client, path, exclude="llm.generation") == [
        "turn.started",
        "message.agent",
        "turn.completed",
    ]
    both = await _types(client, path, types="llm.generation,turn.started", exclude=["llm.generation"])
    assert both == ["turn.started"]
    assert await _types(client, path, types="nothing.like.this") == []


async def test_filters_and_since_id_combine_with_pagination(client: Client, db: Database) -> None:
    session_id, path = await new_session(client)
    first = await store(db, session_id, "keep")
    for i in range(9):
        await store(db, session_id, "keep" if i % 3 else "drop")
    params: dict[str, Any] = {"since_id": str(first.id), "exclude": "drop", "limit": 2}
    pages = [(await client.get(path, params={**params, "offset": offset})).json() for offset in (0, 2, 4, 6)]
    assert [p["total"] for p in pages] == [6, 6, 6, 6]
    assert [[e["sequence"] for e in p["data"]] for p in pages] == [[3, 4], [6, 7], [9, 10], []]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"types": "ok,bad type"}, "types"),
        ({"exclude": "x" * 101}, "exclude"),
        ({"types": "nul\u0000"}, "types"),
        ({"limit": 201}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
async def test_bad_parameters_are_400_naming_them(client: Client, params: dict[str, Any], field: str) -> None:
    _, path = await new_session(client)
    response = await client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


async def test_a_session_of_another_agent_or_none_at_all_is_a_404(client: Client) -> None:
    _, path = await new_session(client)
    other_agent = await factories.agent(client)
    session_id = path.split("/")[5]
    for wrong in (
        f"/v1/agents/{other_agent['id']}/sessions/{session_id}/events",
        path.replace(session_id, str(uuid.uuid4())),
    ):
        for accept in ("application/json", "text/event-stream"):
            response = await client.get(wrong, headers={"Accept": accept})
            assert response.status_code == 404, (wrong, accept, response.text)
            assert response.headers["content-type"].startswith("application/json")
            assert response.json()["status"] == 404


async def test_the_stream_refuses_an_unknown_position_before_it_starts(client: Client, db: Database) -> None:
    session_id, path = await new_session(client)
    known = await store(db, session_id)
    sse = {"Accept": "text/event-stream"}
    cases: list[tuple[dict[str, str], dict[str, str], str]] = [
        (sse, {"since_id": str(uuid.uuid4())}, "since_id"),
        ({**sse, "Last-Event-ID": str(uuid.uuid4())}, {}, "Last-Event-ID"),
        ({**sse, "Last-Event-ID": "garbage"}, {"since_id": str(known.id)}, "Last-Event-ID"),
        (sse, {"types": "a b"}, "types"),
    ]
    for headers, params, field in cases:
        response = await client.get(path, headers=headers, params=params)
        assert response.status_code == 400, (headers, params, response.text)
        assert response.json()["field"] == field


async def test_openapi_documents_both_forms_and_the_parameters(client: Client) -> None:
    spec = (await client.get("/api-doc/openapi.json")).json()
    operation = spec["paths"]["/v1/agents/{agent_id}/sessions/{session_id}/events"]["get"]
    assert operation["operationId"] == "listSessionEvents"
    assert operation["tags"] == ["events"]
    content = operation["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/event-stream"}
    # Each event type's payload: tests/unit/test_event_contract.py.
    assert content["application/json"]["schema"]["$ref"].endswith("/EventPage")
    assert {"400", "404", "500"} <= set(operation["responses"])
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert {"since_id", "types", "exclude", "Last-Event-ID", "offset", "limit"} <= set(parameters)
    assert all(parameters[name].get("description") for name in ("since_id", "types", "exclude"))
