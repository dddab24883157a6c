"""GET /v1/traces with 001's and Opswald's filters in one response, cursor paging, the trace detail
with spans and Opswald's steps, PATCH, DELETE and GET /v1/spans, on the real stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from everloop.stack import Endpoints
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.apps import app_for


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


def llm(span_id: str, trace_id: str, day: int, model: str, cost: float, status: str = "ok") -> dict[str, Any]:
    return {
        "span_id": span_id,
        "trace_id": trace_id,
        "name": "chat",
        "kind": "llm",
        "status": status,
        "model": model,
        "cost": cost,
        "input_tokens": 100,
        "output_tokens": 10,
        "input": {"messages": [{"role": "user", "content": trace_id}]},
        "output": {"content": "ok"},
        "start_time": f"2026-03-{day:02d}T10:00:00Z",
        "end_time": f"2026-03-{day:02d}T10:00:02Z",
    }


async def _world(alice: As) -> None:
    """Four traces: t1 (day 1, gpt-4o, 0.01), t2 (day 2, claude, 0.50, failed), t3 (day 3, both
    models, 1.20), t4 (day 4, no LLM, unset)."""
    batches: list[dict[str, Any]] = [
        {"spans": [llm("a", "t1", 1, "gpt-4o", 0.01)]},
        {"spans": [llm("a", "t2", 2, "claude-3", 0.5, status="error")]},
        {
            "spans": [
                {
                    "span_id": "root",
                    "trace_id": "t3",
                    "name": "turn",
                    "kind": "agent",
                    "start_time": "2026-03-03T09:59:59Z",
                    "end_time": "2026-03-03T10:00:05Z",
                },
                {
                    "span_id": "ask",
                    "trace_id": "t3",
                    "name": "user",
                    "kind": "user_input",
                    "parent_span_id": "root",
                    "input": {"message": "hi"},
                    "start_time": "2026-03-03T09:59:59.500Z",
                },
                llm("a", "t3", 3, "gpt-4o", 0.7),
                {
                    **llm("b", "t3", 3, "claude-3", 0.5),
                    "start_time": "2026-03-03T10:00:03Z",
                    "end_time": "2026-03-03T10:00:04Z",
                },
                {
                    "span_id": "tool",
                    "trace_id": "t3",
                    "name": "read_file",
                    "kind": "tool",
                    "parent_span_id": "root",
                    "output": {"text": "data"},
                    "start_time": "2026-03-03T10:00:02.500Z",
                    "end_time": "2026-03-03T10:00:02.750Z",
                },
            ]
        },
        {"spans": [{"span_id": "x", "trace_id": "t4", "name": "misc", "start_time": "2026-03-04T10:00:00Z"}]},
    ]
    for batch in batches:
        response = await alice.post("/v1/traces", batch)
        assert response.status_code == 201, response.text


async def ids(alice: As, query: str) -> list[str]:
    response = await alice.get(f"/v1/traces?{query}")
    assert response.status_code == 200, response.text
    return [t["trace_id"] for t in response.json()["traces"]]


async def test_every_filter(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    await _world(alice)
    assert await ids(alice, "") == ["t4", "t3", "t2", "t1"]  # newest first
    # 001
    assert await ids(alice, "status=error") == ["t2"]
    assert await ids(alice, "status=ok") == ["t3", "t1"]
    assert await ids(alice, "status=unset") == ["t4"]
    assert await ids(alice, "start_date=2026-03-02T00:00:00Z") == ["t4", "t3", "t2"]
    assert await ids(alice, "end_date=2026-03-02T23:00:00Z") == ["t2", "t1"]
    # Opswald
    assert await ids(alice, "status=failed") == ["t2"] and await ids(alice, "status=completed") == [
        "t3",
        "t1",
    ]
    assert await ids(alice, "start_time=2026-03-02T00:00:00Z&end_time=2026-03-03T23:00:00Z") == ["t3", "t2"]
    assert await ids(alice, "error=true") == ["t2"]
    assert await ids(alice, "error=false") == ["t4", "t3", "t1"]
    assert await ids(alice, "model=gpt-4o") == ["t3", "t1"]
    assert await ids(alice, "model=claude-3") == ["t3", "t2"]
    assert await ids(alice, "model=none") == []
    assert await ids(alice, "min_cost=0.5") == ["t3", "t2"]
    assert await ids(alice, "max_cost=0.5") == ["t4", "t2", "t1"]
    assert await ids(alice, "min_cost=0.1&max_cost=1") == ["t2"]
    me = (await alice.get("/api/auth/me")).json()["id"]
    assert await ids(alice, f"user_id={me}") == ["t4", "t3", "t2", "t1"]
    assert await ids(alice, "user_id=someone-else") == []
    bad = await alice.get("/v1/traces?status=great")
    assert bad.status_code == 400 and bad.json()["field"] == "status"
    assert (await alice.get("/v1/traces?min_cost=-1")).status_code == 400
    # Times are RFC 3339 text: a bare number is not read as a Unix timestamp.
    for name in ("start_date", "end_date", "start_time", "end_time"):
        number = await alice.get(f"/v1/traces?{name}=0.5")
        assert number.status_code == 400 and number.json()["field"] == name, number.text


async def test_one_response_carries_both_shapes_and_pages(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    await _world(alice)
    body = (await alice.get("/v1/traces?limit=2")).json()
    assert (body["total"], body["offset"], body["limit"], body["has_more"]) == (4, 0, 2, True)
    t3 = body["traces"][1]
    assert t3["id"] == t3["trace_id"] == "t3"
    assert t3["started_at"] == t3["start_time"] and t3["started_at"].startswith("2026-03-03T09:59:59")
    assert t3["ended_at"].startswith("2026-03-03T10:00:05") and t3["duration_ms"] == 6000
    assert t3["total_cost"] == pytest.approx(1.2) and t3["total_tokens"] == {"input": 200, "output": 20}
    assert t3["models_used"] == ["claude-3", "gpt-4o"]
    assert t3["steps"] == t3["step_count"] == 4 and t3["span_count"] == 5  # the agent root is no step
    assert (t3["errors"], t3["status"], t3["run_status"]) == (0, "ok", "completed")
    assert {"metadata", "external_id", "project_id", "session_id", "user_id", "end_time"} <= set(t3)

    # Offset paging (001) and cursor paging (Opswald) walk the same order.
    second = (await alice.get("/v1/traces?limit=2&offset=2")).json()
    assert [t["trace_id"] for t in second["traces"]] == ["t2", "t1"] and second["has_more"] is False
    cursor = body["pagination"]["next_cursor"]
    assert cursor and body["pagination"]["has_more"] is True
    page = (await alice.get(f"/v1/traces?limit=2&cursor={cursor}")).json()
    assert [t["trace_id"] for t in page["traces"]] == ["t2", "t1"]
    assert page["pagination"] == {"has_more": False, "next_cursor": None} and page["total"] == 4
    # A new trace arriving does not shift a cursor's page (keyset, not offset).
    await alice.post("/v1/traces", {"spans": [llm("n", "t5", 5, "gpt-4o", 0.1)]})
    again = (await alice.get(f"/v1/traces?limit=2&cursor={cursor}")).json()
    assert [t["trace_id"] for t in again["traces"]] == ["t2", "t1"]
    filtered = (await alice.get("/v1/traces?limit=1&model=gpt-4o")).json()
    following = (
        await alice.get(f"/v1/traces?limit=1&model=gpt-4o&cursor={filtered['pagination']['next_cursor']}")
    ).json()
    assert [t["trace_id"] for t in filtered["traces"] + following["traces"]] == ["t5", "t3"]
    bad = await alice.get("/v1/traces?cursor=not-a-cursor")
    assert bad.status_code == 400 and bad.json()["field"] == "cursor"


async def test_detail_steps_patch_delete(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    await _world(alice)
    trace = (await alice.get("/v1/traces/t3")).json()
    assert [s["span_id"] for s in trace["spans"]] == ["root", "ask", "a", "tool", "b"]
    steps = trace["steps"]
    assert [(s["step_number"], s["type"], s["id"]) for s in steps] == [
        (1, "user_input", "ask"),
        (2, "llm_call", "a"),
        (3, "tool_call", "tool"),
        (4, "llm_call", "b"),
    ]
    assert steps[0]["input"] == {"message": "hi"} and steps[0]["duration_ms"] == 0 and steps[0]["cost"] == 0
    assert steps[1]["tokens"] == {"input": 100, "output": 10} and steps[1]["cost"] == pytest.approx(0.7)
    assert steps[1]["duration_ms"] == 2000 and steps[1]["output"] == {"content": "ok"}
    assert steps[2]["timestamp"].startswith("2026-03-03T10:00:02.5") and steps[2]["duration_ms"] == 250

    patched = await alice.patch("/v1/traces/t4", {"status": "failed", "metadata": {"key": "value"}})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["status"], patched.json()["metadata"]) == ("error", {"key": "value"})
    assert await ids(alice, "error=true") == ["t4", "t2"]
    assert (await alice.patch("/v1/traces/t4", {"status": "paused"})).json()["field"] == "status"
    assert (await alice.patch("/v1/traces/nope", {"status": "ok"})).status_code == 404

    deleted = await alice.delete("/v1/traces/t3")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True, "trace_id": "t3"}
    assert (await alice.get("/v1/traces/t3")).json() == {"error": "trace not found", "status": 404}
    assert (await alice.get("/v1/spans?trace_id=t3")).json()["total"] == 0
    assert (await alice.delete("/v1/traces/t3")).status_code == 404


async def test_spans_list(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    await _world(alice)

    async def spans(query: str) -> dict[str, Any]:
        response = await alice.get(f"/v1/spans?{query}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = await spans("")
    assert (everything["total"], everything["offset"], everything["limit"]) == (8, 0, 50)
    assert (await spans("kind=llm"))["total"] == 4
    assert [s["trace_id"] for s in (await spans("status=error"))["spans"]] == ["t2"]
    assert {s["span_id"] for s in (await spans("trace_id=t3"))["spans"]} == {"root", "ask", "a", "b", "tool"}
    assert (await spans("trace_id=t3&kind=tool"))["spans"][0]["output"] == {"text": "data"}
    paged = await spans("limit=3&offset=6")
    assert len(paged["spans"]) == 2 and paged["total"] == 8

    # A project key reads its project's spans only (the one filter that needs the join to traces);
    # the account's key still reads them all.
    key = {"Authorization": f"Bearer {(await alice.post('/v1/projects', {'name': 'p'})).json()['api_key']}"}
    sent = await client.post("/v1/traces", json={"spans": [llm("a", "t5", 5, "gpt-4o", 0.1)]}, headers=key)
    assert sent.status_code == 201, sent.text
    keyed = (await client.get("/v1/spans", headers=key)).json()
    assert ([s["trace_id"] for s in keyed["spans"]], keyed["total"]) == (["t5"], 1)
    assert (await client.get("/v1/spans?kind=llm", headers=key)).json()["total"] == 1
    assert (await spans(""))["total"] == 9
