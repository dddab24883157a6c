"""Opswald's events (POST /v1/events, GET /v1/events/{id}) on the real stack: each becomes a step of
its session's trace, a resent event id is one span, bad input a 400 naming the field, isolation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from everloop.stack import Endpoints
from services.trace_events import session_trace_id
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.apps import app_for


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


def llm_call(**extra: Any) -> dict[str, Any]:
    return {
        "event_type": "llm_call",
        "session_id": "session_456",
        "data": {
            "model": "gpt-4o",
            "input": {"messages": [{"role": "user", "content": "Hello"}]},
            "output": {"content": "Hi there!"},
            "cost": 0.0012,
            "tokens": {"input": 8, "output": 12},
            "temperature": 0.1,
        },
        "timestamp": "2026-03-17T14:15:32Z",
        **extra,
    }


async def test_events_of_a_session_are_the_steps_of_one_trace(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    asked = await alice.post(
        "/v1/events",
        {
            "event_type": "user_input",
            "session_id": "session_456",
            "user_id": "user_789",
            "data": {"input": {"message": "Analyze this"}},
            "timestamp": "2026-03-17T14:15:31Z",
        },
    )
    assert asked.status_code == 201, asked.text
    first = asked.json()
    assert first["processed"] is True and first["event_id"].startswith("evt_")
    assert first["trace_id"] == session_trace_id("session_456")
    answered = await alice.post("/v1/events", llm_call(event_id="evt-2"))
    assert answered.json() == {
        "event_id": "evt-2",
        "processed": True,
        "trace_id": first["trace_id"],
        "session_id": "session_456",
    }
    tool = await alice.post(
        "/v1/events",
        {
            "event_type": "tool_call",
            "session_id": "session_456",
            "data": {"name": "read_file", "input": {"f": "a.csv"}, "error": {"type": "io", "message": "x"}},
            "timestamp": "2026-03-17T14:15:34Z",
        },
    )
    custom = await alice.post(
        "/v1/events",
        {"event_type": "retrieval_hit", "session_id": "session_456", "timestamp": "2026-03-17T14:15:35Z"},
    )
    assert tool.status_code == custom.status_code == 201

    trace = (await alice.get(f"/v1/traces/{first['trace_id']}")).json()
    assert trace["session_id"] == "session_456" and trace["user_id"] == "user_789"
    assert [s["type"] for s in trace["steps"]] == ["user_input", "llm_call", "tool_call", "retrieval_hit"]
    llm = trace["steps"][1]
    assert (llm["model"], llm["cost"], llm["tokens"]) == ("gpt-4o", 0.0012, {"input": 8, "output": 12})
    assert trace["total_cost"] == 0.0012 and trace["models_used"] == ["gpt-4o"]
    assert trace["steps"][2]["status"] == "error" and "io" in trace["steps"][2]["error"]
    assert trace["status"] == "error" and trace["errors"] == 1

    got = (await alice.get("/v1/events/evt-2")).json()
    assert got["event_type"] == "llm_call" and got["trace_id"] == first["trace_id"]
    assert got["data"] == llm_call()["data"]
    assert got["timestamp"].startswith("2026-03-17T14:15:32")


async def test_an_event_sent_twice_with_its_id_is_one_span(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    for _ in range(2):
        sent = await alice.post("/v1/events", llm_call(id="evt-once"))
        assert sent.status_code == 201, sent.text
    changed = llm_call(event_id="evt-once")
    changed["data"]["cost"] = 0.5
    await alice.post("/v1/events", changed)
    trace = (await alice.get(f"/v1/traces/{session_trace_id('session_456')}")).json()
    assert trace["span_count"] == 1 and trace["total_cost"] == 0.5

    # An explicit trace_id wins over the session's trace; no session and no trace: a trace of its own.
    placed = await alice.post("/v1/events", llm_call(trace_id="my-trace", event_id="e3"))
    assert placed.json()["trace_id"] == "my-trace"
    alone = (await alice.post("/v1/events", {"event_type": "user_input", "event_id": "solo"})).json()
    assert alone["trace_id"] == "trace_solo" and alone["session_id"] is None


async def test_bad_events_are_400s_naming_the_field(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    for body, field in (
        ({"session_id": "s"}, "event_type"),
        ({"event_type": ""}, "event_type"),
        (llm_call(data={"cost": -1}), "data.cost"),
        (llm_call(data={"cost": "cheap"}), "data.cost"),
        (llm_call(data={"tokens": {"input": -3}}), "data.tokens.input"),
        (llm_call(data={"tokens": 5}), "data.tokens"),
        (llm_call(data={"model": 4}), "data.model"),
        (llm_call(timestamp="yesterday"), "timestamp"),
        (llm_call(session_id="x" * 256), "session_id"),
        (llm_call(event_id="a", id="b"), "id"),
        (llm_call(colour="red"), "colour"),
    ):
        answer = await alice.post("/v1/events", body)
        assert answer.status_code == 400, (body, answer.text)
        assert field in answer.json()["error"], (field, answer.text)
    assert (await alice.get("/v1/traces")).json()["total"] == 0  # nothing was written


async def test_another_account_neither_sees_nor_joins_the_events(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    bob = As(client, await register(client))
    await alice.post("/v1/events", llm_call(event_id="evt-a"))
    assert (await bob.get("/v1/events/evt-a")).status_code == 404
    # Bob's event of the same session and id is his own trace and span.
    await bob.post("/v1/events", llm_call(event_id="evt-a", data={"cost": 9}))
    assert (await alice.get("/v1/events/evt-a")).json()["data"]["cost"] == 0.0012
    assert (await bob.get("/v1/events/evt-a")).json()["data"]["cost"] == 9
    # A span that is no event (001's ingestion) is not an event.
    await alice.post("/v1/traces", {"spans": [{"trace_id": "t", "span_id": "plain", "name": "x"}]})
    assert (await alice.get("/v1/events/plain")).status_code == 404


async def test_a_project_key_sends_events_into_its_project(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    project = (await alice.post("/v1/projects", {"name": "ops"})).json()
    key = {"Authorization": f"Bearer {project['api_key']}"}
    sent = await client.post("/v1/events", json=llm_call(event_id="k1"), headers=key)
    assert sent.status_code == 201, sent.text
    trace = (await alice.get(f"/v1/traces/{sent.json()['trace_id']}")).json()
    assert trace["project_id"] == project["id"]
    assert (await client.get("/v1/events/k1", headers=key)).status_code == 200
    # Alice's own event, in her default project, is not the key's to read.
    await alice.post("/v1/events", llm_call(event_id="mine", session_id="other"))
    assert (await client.get("/v1/events/mine", headers=key)).status_code == 404
