"""Opswald's sessions across agents on the real stack with full auth: GET /v1/sessions answers
Everruns' page and Opswald's `sessions` (agent and external sessions), GET /v1/sessions/{id} for
both kinds, POST /v1/sessions/{id}/end (an ended agent session refuses messages), isolation."""

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

HI = {"message": {"role": "user", "content": [{"type": "text", "text": "hi"}]}}


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


async def _made(who: As, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await who.post(path, body)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def _world(alice: As) -> dict[str, Any]:
    provider = await _made(alice, "/v1/llm-providers", {"name": "p", "provider_type": "simulator"})
    model = await _made(alice, f"/v1/llm-providers/{provider['id']}/models", {"model_id": "sim"})
    agent = await _made(
        alice, "/v1/agents", {"name": "a", "system_prompt": "p", "default_model_id": model["id"]}
    )
    session = await _made(alice, "/v1/sessions", {"agent_id": agent["id"], "title": "support chat"})
    for session_id, user, cost, day in (
        ("ext-1", "u1", 0.25, 1),
        ("ext-1", "u1", 0.5, 2),
        ("ext-2", "u2", 1.0, 3),
    ):
        await _made(
            alice,
            "/v1/events",
            {
                "event_type": "llm_call",
                "session_id": session_id,
                "user_id": user,
                # Two traces in ext-1: the second event names its own trace.
                **({"trace_id": "ext-1-run-2"} if day == 2 else {}),
                "data": {"model": "gpt-4o", "cost": cost, "tokens": {"input": 10, "output": 5}},
                "timestamp": f"2026-03-0{day}T10:00:00Z",
            },
        )
    return {"agent": agent, "session": session}


async def test_one_list_serves_everruns_and_opswald(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    world = await _world(alice)
    listing = (await alice.get("/v1/sessions")).json()
    # Everruns' page: agent sessions only, as before.
    assert [s["id"] for s in listing["data"]] == [world["session"]["id"]]
    assert (listing["total"], listing["offset"], listing["limit"]) == (1, 0, 50)
    # Opswald's: agent and external sessions, most recently active first.
    by_id = {s["session_id"]: s for s in listing["sessions"]}
    assert listing["sessions_total"] == 3 and set(by_id) == {world["session"]["id"], "ext-1", "ext-2"}
    ext1 = by_id["ext-1"]
    assert (ext1["kind"], ext1["user_id"], ext1["trace_count"], ext1["total_cost"], ext1["total_tokens"]) == (
        "external",
        "u1",
        2,
        0.75,
        30,
    )
    assert (ext1["status"], ext1["active"]) == ("active", True)
    assert ext1["started_at"].startswith("2026-03-01") and ext1["last_activity"].startswith("2026-03-02")
    agent_row = by_id[world["session"]["id"]]
    assert agent_row["kind"] == "agent" and agent_row["agent_id"] == world["agent"]["id"]
    assert agent_row["trace_count"] == 0

    only_u1 = (await alice.get("/v1/sessions?user_id=u1")).json()
    assert only_u1["data"] == [] and [s["session_id"] for s in only_u1["sessions"]] == ["ext-1"]
    mine = (await alice.get(f"/v1/sessions?user_id={agent_row['user_id']}")).json()
    assert [s["session_id"] for s in mine["sessions"]] == [world["session"]["id"]] and len(mine["data"]) == 1
    limited = (await alice.get("/v1/sessions?limit=1")).json()
    assert len(limited["sessions"]) == 1 and limited["sessions_total"] == 3
    by_agent = (await alice.get(f"/v1/sessions?agent_id={world['agent']['id']}")).json()
    assert [s["kind"] for s in by_agent["sessions"]] == ["agent"]
    assert (await alice.get("/v1/sessions?active=perhaps")).status_code == 400
    assert (await alice.get("/v1/sessions?limit=0")).status_code == 400


async def test_each_kind_of_session_reads_and_ends(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    world = await _world(alice)
    session_id = world["session"]["id"]

    external = (await alice.get("/v1/sessions/ext-1")).json()
    assert external["kind"] == "external" and external["trace_count"] == 2
    assert set(external["trace_ids"]) == {session_trace_id("ext-1"), "ext-1-run-2"}
    agent = (await alice.get(f"/v1/sessions/{session_id}")).json()
    assert agent["id"] == session_id and agent["title"] == "support chat" and agent["ended_at"] is None
    # Opswald's summary beside Everruns' fields; `status` stays Everruns' (its clients read it).
    assert (agent["session_id"], agent["kind"], agent["active"], agent["trace_count"]) == (
        session_id,
        "agent",
        True,
        0,
    )
    assert agent["trace_ids"] == [] and agent["status"] == "started" and agent["user_id"]
    assert (await alice.get("/v1/sessions/no-such-session")).status_code == 404

    ended = await alice.post("/v1/sessions/ext-1/end", {})
    assert ended.status_code == 200, ended.text
    assert ended.json()["kind"] == "external" and ended.json()["status"] == "completed"
    again = (await alice.post("/v1/sessions/ext-1/end", {})).json()
    assert again["ended_at"] == ended.json()["ended_at"]  # ending twice keeps the first end
    assert (await alice.get("/v1/sessions/ext-1")).json()["status"] == "completed"
    # Events may still arrive for an ended session (they are recorded); it stays ended.
    assert (await alice.post("/v1/events", {"event_type": "x", "session_id": "ext-1"})).status_code == 201
    assert (await alice.get("/v1/sessions/ext-1")).json()["active"] is False

    closed = await alice.post(f"/v1/sessions/{session_id}/end", {})
    assert closed.status_code == 200, closed.text
    assert closed.json()["kind"] == "agent" and closed.json()["turn_cancelled"] is False
    refused = await alice.post(f"/v1/sessions/{session_id}/messages", HI)
    assert refused.status_code == 409 and "ended" in refused.json()["error"]
    nested = await alice.post(f"/v1/agents/{world['agent']['id']}/sessions/{session_id}/messages", HI)
    assert nested.status_code == 409
    closed_detail = (await alice.get(f"/v1/sessions/{session_id}")).json()
    assert closed_detail["ended_at"] is not None and closed_detail["active"] is False

    ended_only = (await alice.get("/v1/sessions?active=false")).json()
    assert {s["session_id"] for s in ended_only["sessions"]} == {"ext-1", session_id}
    assert [s["id"] for s in ended_only["data"]] == [session_id]
    assert [s["session_id"] for s in (await alice.get("/v1/sessions?active=true")).json()["sessions"]] == [
        "ext-2"
    ]


async def test_another_account_sees_and_ends_none_of_them(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    world = await _world(alice)
    bob = As(client, await register(client))
    for session_id in ("ext-1", world["session"]["id"]):
        assert (await bob.get(f"/v1/sessions/{session_id}")).status_code == 404
        assert (await bob.post(f"/v1/sessions/{session_id}/end", {})).status_code == 404
    listing = (await bob.get("/v1/sessions")).json()
    assert listing["sessions"] == [] and listing["data"] == [] and listing["sessions_total"] == 0
    # Bob's own session of the same external id is his, and Alice's stays active.
    await bob.post("/v1/events", {"event_type": "x", "session_id": "ext-1"})
    assert (await bob.post("/v1/sessions/ext-1/end", {})).status_code == 200
    assert (await alice.get("/v1/sessions/ext-1")).json()["active"] is True
