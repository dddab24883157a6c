"""POST /v1/traces (001) on the real stack with full auth: a batch lands whole or not at all, a span
sent again updates that span (a retried batch writes nothing twice), unknown kinds are kept, bad
input is a 400 naming the field, the size limits hold, span events, and project keys."""

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
    settings = full_settings(endpoints, TRACE_MAX_SPANS="5", TRACE_MAX_FIELD_BYTES="2048")
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as test_client:
        yield test_client


def span(span_id: str, trace_id: str = "trace-001", **fields: Any) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "trace_id": trace_id,
        "name": f"step {span_id}",
        "start_time": "2024-01-01T00:00:00Z",
        "end_time": "2024-01-01T00:00:01Z",
        **fields,
    }


async def test_a_batch_lands_and_a_retry_writes_nothing_twice(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    batch = {
        "spans": [
            span("root", kind="agent", status="ok"),
            span(
                "llm-1",
                parent_span_id="root",
                kind="llm",
                status="ok",
                input={"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]},
                output={"content": "Hello"},
                model="gpt-4",
                input_tokens=10,
                output_tokens=5,
                cost=0.25,
                events=[{"name": "first-token", "timestamp": "2024-01-01T00:00:00.5Z"}],
            ),
            span("rank", kind="reranker"),
        ],
        "trace_name": "my-pipeline",
        "trace_metadata": {"env": "test"},
        "external_id": "ext-123",
    }
    made = await alice.post("/v1/traces", batch)
    assert made.status_code == 201, made.text
    assert made.json() == {"trace_id": "trace-001", "span_count": 3}
    again = await alice.post("/v1/traces", batch)
    assert again.status_code == 201 and again.json() == made.json()

    trace = (await alice.get("/v1/traces/trace-001")).json()
    assert (trace["name"], trace["external_id"], trace["metadata"]) == (
        "my-pipeline",
        "ext-123",
        {"env": "test"},
    )
    assert trace["span_count"] == 3 and len(trace["spans"]) == 3
    assert trace["total_tokens"] == {"input": 10, "output": 5} and trace["total_cost"] == 0.25
    assert trace["models_used"] == ["gpt-4"] and trace["status"] == "ok"
    llm = next(s for s in trace["spans"] if s["span_id"] == "llm-1")
    assert [e["name"] for e in llm["events"]] == ["first-token"]  # not twice
    assert llm["duration_ms"] == 1000 and llm["output"] == {"content": "Hello"}
    assert {s["kind"] for s in trace["spans"]} == {"agent", "llm", "reranker"}  # a custom kind kept
    projects = (await alice.get("/v1/projects")).json()["projects"]
    assert trace["project_id"] == projects[0]["id"]  # the default project

    # A span sent again with its outcome updates it; the trace follows.
    update = {"spans": [span("rank", kind="reranker", status="error", error="timed out")]}
    assert (await alice.post("/v1/traces", update)).status_code == 201
    trace = (await alice.get("/v1/traces/trace-001")).json()
    assert trace["span_count"] == 3 and trace["errors"] == 1
    assert (trace["status"], trace["run_status"]) == ("error", "failed")
    assert trace["name"] == "my-pipeline"  # a batch that does not name the trace keeps its name


async def test_bad_input_names_the_field_and_writes_nothing(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))

    async def refused(body: dict[str, Any], field: str) -> None:
        response = await alice.post("/v1/traces", body)
        assert response.status_code == 400, response.text
        error = response.json()
        assert error["status"] == 400 and field in error["error"], (field, error)

    await refused(
        {"spans": [span("a"), span("b"), span("c"), span("d", start_time="soon")]}, "spans[3].start_time"
    )
    await refused({"spans": [span("a"), span("b", trace_id="other")]}, "spans[1].trace_id")
    await refused({"spans": [span("a"), span("a")]}, "spans[1].span_id")
    await refused({"spans": [span("a", status="great")]}, "spans[0].status")
    await refused({"spans": [span("a", end_time="2023-12-31T00:00:00Z")]}, "spans[0].end_time")
    await refused({"spans": [span("a", input_tokens=-1)]}, "spans[0].input_tokens")
    await refused({"spans": [span("a", colour="red")]}, "colour")
    await refused({"spans": []}, "spans")
    await refused({"spans": [span(str(i)) for i in range(6)]}, "spans")  # TRACE_MAX_SPANS=5
    await refused({"spans": [span("a"), span("b", input="x" * 3000)]}, "spans[1].input")
    missing = await alice.post("/v1/traces", {"spans": [span("a")], "project_id": "no-such-project"})
    assert missing.status_code == 404 and missing.json()["field"] == "project_id"
    # Nothing of any refused batch was stored.
    assert (await alice.get("/v1/traces")).json()["total"] == 0
    assert (await alice.get("/v1/spans")).json()["total"] == 0


async def test_span_events(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    await alice.post("/v1/traces", {"spans": [span("a")]})
    added = await alice.post(
        "/v1/traces/trace-001/events/a", {"name": "cache-hit", "attributes": {"key": "abc"}}
    )
    assert added.status_code == 201, added.text
    event = added.json()
    assert event["name"] == "cache-hit" and event["attributes"] == {"key": "abc"} and event["timestamp"]
    assert (await alice.post("/v1/traces/trace-001/events/nope", {"name": "x"})).json() == {
        "error": "span not found",
        "status": 404,
    }
    assert (await alice.post("/v1/traces/nope/events/a", {"name": "x"})).json()["error"] == "trace not found"
    spans = (await alice.get("/v1/spans?trace_id=trace-001")).json()["spans"]
    assert spans[0]["events"] == [event]


async def test_project_keys_ingest_and_read_their_own_project(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    first = (await alice.post("/v1/projects", {"name": "first"})).json()
    second = (await alice.post("/v1/projects", {"name": "second"})).json()
    key = {"Authorization": f"Bearer {first['api_key']}"}

    # With a key, the key's project wins whatever the body names.
    body = {"spans": [span("a", trace_id="keyed")], "project_id": second["id"]}
    assert (await client.post("/v1/traces", json=body, headers=key)).status_code == 201
    assert (
        await alice.post("/v1/traces", {"spans": [span("b", trace_id="by-name")], "project_id": "second"})
    ).status_code == 201
    assert (await alice.post("/v1/traces", {"spans": [span("c", trace_id="default")]})).status_code == 201

    seen = (await client.get("/v1/traces", headers=key)).json()
    assert [t["trace_id"] for t in seen["traces"]] == ["keyed"] and seen["traces"][0]["project_id"] == first[
        "id"
    ]
    assert (await client.get("/v1/traces/by-name", headers=key)).status_code == 404
    assert (await client.get("/v1/spans", headers=key)).json()["total"] == 1
    # It may not add to another project's trace, nor change or delete traces.
    intruding = await client.post("/v1/traces", json={"spans": [span("x", trace_id="by-name")]}, headers=key)
    assert intruding.status_code == 404
    assert (await client.patch("/v1/traces/keyed", json={"status": "ok"}, headers=key)).status_code == 403
    assert (await client.delete("/v1/traces/keyed", headers=key)).status_code == 403
    # The account sees all three; by project on request.
    assert (await alice.get("/v1/traces")).json()["total"] == 3
    listed = (await alice.get(f"/v1/traces?project_id={second['id']}")).json()
    assert [t["trace_id"] for t in listed["traces"]] == ["by-name"]


async def test_another_account_is_isolated(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    bob = As(client, await register(client))
    await alice.post("/v1/traces", {"spans": [span("a", trace_id="shared-id")]})
    # The same caller id in another account is another trace.
    assert (await bob.post("/v1/traces", {"spans": [span("b", trace_id="shared-id")]})).status_code == 201
    mine = (await bob.get("/v1/traces/shared-id")).json()
    assert [s["span_id"] for s in mine["spans"]] == ["b"]
    assert (await bob.get("/v1/spans")).json()["total"] == 1
    bobs_project = (await bob.get("/v1/projects")).json()["projects"][0]["id"]
    assert (
        await alice.post("/v1/traces", {"spans": [span("c")], "project_id": bobs_project})
    ).status_code == 404
