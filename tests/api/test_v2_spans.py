"""Opper's `/v2` spans, feedback, span metrics and traces on the real stack with full auth: the
shapes (`{data, meta: {total_count}}`, `{"detail"}` errors, 422 for validation, 204 deletes), the
store behind them (an OTLP trace reads through `/v2` too), and isolation between accounts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from core.db.models import Trace, User
from core.schemas.traces import SpanWrite
from everloop.stack import Endpoints
from services import traces
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.api.test_otlp_ingest import otlp_json
from tests.apps import app_for


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


async def made(user: As, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await user.post(path, body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_spans_make_a_trace_that_lists_and_reads(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    root = await made(
        alice,
        "/v2/spans",
        {
            "name": "answer-question",
            "type": "call",
            "start_time": "2026-11-29T12:00:00Z",
            "input": {"q": "2+2?"},
        },
    )
    uuid.UUID(root["id"]), uuid.UUID(root["trace_id"])  # made for the caller, as Opper's are
    assert root["parent_id"] is None and root["type"] == "call" and root["status"] == "unset"
    child_id = str(uuid.uuid4())
    child = await made(
        alice,
        "/v2/spans",
        {
            "id": child_id,
            "parent_id": root["id"],
            "name": "llm-call",
            "type": "llm",
            "start_time": "2026-11-29T12:00:01Z",
            "meta": {"model": "gpt-4o"},
        },
    )
    assert child["id"] == child_id and child["trace_id"] == root["trace_id"]  # the parent's trace

    patched = await alice.patch(
        f"/v2/spans/{child_id}",
        {"output": "4", "end_time": "2026-11-29T12:00:03.5Z", "meta": {"model": "gpt-4o", "n": 1}},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["output"] == "4" and body["status"] == "ok" and body["duration_ms"] == 2500
    assert body["name"] == "llm-call" and body["meta"] == {"model": "gpt-4o", "n": 1}
    failed = (
        await alice.patch(f"/v2/spans/{root['id']}", {"error": "boom", "end_time": "2026-11-29T12:00:04Z"})
    ).json()
    assert failed["status"] == "error" and failed["input"] == {"q": "2+2?"}  # left-out fields stay

    fetched = (await alice.get(f"/v2/spans/{child_id}")).json()
    assert fetched["output"] == "4" and fetched["parent_id"] == root["id"]

    listed = (await alice.get("/v2/traces")).json()
    assert listed["meta"] == {"total_count": 1}
    (summary,) = listed["data"]
    assert set(summary) == {"id", "name", "start_time", "end_time", "duration_ms", "status", "total_tokens"}
    assert summary["id"] == root["trace_id"] and summary["name"] == "answer-question"
    assert summary["duration_ms"] == 4000 and summary["status"] == "error" and summary["total_tokens"] == 0
    assert (await alice.get("/v2/traces?name=ANSWER")).json()["meta"]["total_count"] == 1
    assert (await alice.get("/v2/traces?name=nothing%25")).json() == {
        "data": [],
        "meta": {"total_count": 0},
    }

    detail = (await alice.get(f"/v2/traces/{root['trace_id']}")).json()
    assert detail["span_count"] == 2 and detail["id"] == root["trace_id"]
    with_spans = (await alice.get(f"/v2/traces/{root['trace_id']}/spans")).json()
    assert [s["id"] for s in with_spans["spans"]] == [root["id"], child_id]

    # A retried POST with the same id replaces the span: still two.
    await made(
        alice, "/v2/spans", {"id": child_id, "parent_id": root["id"], "name": "llm-call", "output": "4"}
    )
    assert (await alice.get(f"/v2/traces/{root['trace_id']}")).json()["span_count"] == 2

    deleted = await alice.delete(f"/v2/spans/{child_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await alice.get(f"/v2/spans/{child_id}")).status_code == 404
    assert (await alice.get(f"/v2/traces/{root['trace_id']}")).json()["span_count"] == 1


async def test_an_otlp_trace_reads_through_v2(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    trace_id = "5b8efff798038103d269b633813fc60c"
    sent = await alice.post("/v1/otlp/v1/traces", otlp_json(trace_id, "eee19b7ec3c1b174"))
    assert sent.status_code == 200, sent.text
    (summary,) = (await alice.get("/v2/traces")).json()["data"]
    assert summary["id"] == trace_id and summary["total_tokens"] == 8 and summary["status"] == "ok"
    (span,) = (await alice.get(f"/v2/traces/{trace_id}/spans")).json()["spans"]
    assert span["id"] == "eee19b7ec3c1b174" and span["type"] == "embedding" and span["input_tokens"] == 8


async def test_feedback_and_metrics(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    span = await made(alice, "/v2/spans", {"name": "call"})
    feedback = await made(
        alice, f"/v2/spans/{span['id']}/feedback", {"score": 0.8, "comment": "good", "save_to_dataset": True}
    )
    assert feedback["name"] == "score" and feedback["value"] == 0.8 and feedback["comment"] == "good"
    assert feedback["span_id"] == span["id"] and feedback["saved_to_dataset"] is False

    metric = await made(alice, f"/v2/spans/{span['id']}/metrics", {"name": "latency", "value": 1.5})
    listed = (await alice.get(f"/v2/spans/{span['id']}/metrics")).json()
    assert listed["meta"] == {"total_count": 2}
    assert [m["name"] for m in listed["data"]] == ["score", "latency"]
    assert (await alice.get(f"/v2/spans/{span['id']}/metrics?limit=1&offset=1")).json()["data"][0][
        "id"
    ] == metric["id"]

    changed = await alice.patch(
        f"/v2/spans/{span['id']}/metrics/{metric['id']}", {"value": 2.0, "comment": "slow"}
    )
    assert (
        changed.status_code == 200 and changed.json()["value"] == 2.0 and changed.json()["name"] == "latency"
    )
    assert changed.json()["comment"] == "slow"
    assert (await alice.delete(f"/v2/spans/{span['id']}/metrics/{metric['id']}")).status_code == 204
    gone = await alice.patch(f"/v2/spans/{span['id']}/metrics/{metric['id']}", {"value": 1})
    assert gone.status_code == 404 and gone.json() == {"detail": "metric not found"}
    # Deleting the span deletes its metrics.
    assert (await alice.delete(f"/v2/spans/{span['id']}")).status_code == 204
    assert (await alice.get(f"/v2/spans/{span['id']}/metrics")).status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v2/spans", {}, "name"),
        ("/v2/spans", {"name": ""}, "name"),
        ("/v2/spans", {"name": "x", "start_time": "yesterday"}, "start_time"),
        ("/v2/spans", {"name": "x", "meta": [1]}, "meta"),
        ("{span}/feedback", {"score": 1.5}, "score"),
        ("{span}/feedback", {"comment": "no score"}, "score"),
        ("{span}/metrics", {"name": "m", "value": "high"}, "value"),
    ],
)
async def test_invalid_bodies_are_422_in_opper_form(
    client: AsyncTestClient[Litestar], path: str, body: dict[str, Any], field: str
) -> None:
    alice = As(client, await register(client))
    span = await made(alice, "/v2/spans", {"name": "call"})
    response = await alice.post(path.format(span=f"/v2/spans/{span['id']}"), body)
    assert response.status_code == 422, response.text
    assert list(response.json()) == ["detail"] and field in response.json()["detail"]


async def test_an_unknown_body_field_is_ignored_as_opper_does(client: AsyncTestClient[Litestar]) -> None:
    """A later SDK's new field must not break span writes (docs/v2.md, unknown fields)."""
    alice = As(client, await register(client))
    span = await made(alice, "/v2/spans", {"name": "x", "colour": "red"})
    assert span["name"] == "x" and "colour" not in span


async def test_errors_under_v2_and_v1_keep_their_forms(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    assert (await alice.get("/v2/spans/nope")).json() == {"detail": "span not found"}
    assert (await alice.get("/v2/traces/nope")).json() == {"detail": "trace not found"}
    assert (await alice.get("/v2/traces?limit=0")).status_code == 422
    unknown = await alice.get("/v2/no-such-route")
    assert unknown.status_code == 404 and list(unknown.json()) == ["detail"]
    client.cookies.clear()  # registering signed the test client in with a cookie
    anonymous = await client.get("/v2/traces")
    assert anonymous.status_code == 401 and list(anonymous.json()) == ["detail"]
    empty = await client.post(
        "/v2/spans", content=b"", headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert empty.status_code in (400, 422) and list(empty.json()) == ["detail"]
    # /v1 keeps the Everruns form.
    v1 = await alice.get(f"/v1/agents/{uuid.uuid4()}")
    assert v1.status_code == 404 and v1.json()["status"] == 404 and "error" in v1.json()


async def test_another_account_sees_none_of_it(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    bob = As(client, await register(client))
    span = await made(alice, "/v2/spans", {"name": "alice's", "input": "secret"})
    metric = await made(alice, f"/v2/spans/{span['id']}/metrics", {"name": "m", "value": 1})
    sid, tid, mid = span["id"], span["trace_id"], metric["id"]
    for method, path, body in [
        ("GET", f"/v2/spans/{sid}", None),
        ("PATCH", f"/v2/spans/{sid}", {"output": "taken"}),
        ("POST", f"/v2/spans/{sid}/feedback", {"score": 0}),
        ("POST", f"/v2/spans/{sid}/metrics", {"name": "m", "value": 0}),
        ("GET", f"/v2/spans/{sid}/metrics", None),
        ("PATCH", f"/v2/spans/{sid}/metrics/{mid}", {"value": 0}),
        ("DELETE", f"/v2/spans/{sid}/metrics/{mid}", None),
        ("DELETE", f"/v2/spans/{sid}", None),
        ("GET", f"/v2/traces/{tid}", None),
        ("GET", f"/v2/traces/{tid}/spans", None),
    ]:
        response = await client.request(method, path, json=body, headers=bob.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert "secret" not in response.text
    assert (await bob.get("/v2/traces")).json() == {"data": [], "meta": {"total_count": 0}}
    # Bob naming Alice's trace id gets a trace of his own.
    bobs = await made(bob, "/v2/spans", {"name": "bob's", "trace_id": tid})
    assert bobs["trace_id"] == tid
    assert (await bob.get(f"/v2/traces/{tid}/spans")).json()["spans"][0]["name"] == "bob's"
    alices = (await alice.get(f"/v2/traces/{tid}/spans")).json()["spans"]
    assert [s["name"] for s in alices] == ["alice's"] and alices[0]["input"] == "secret"
    assert (await alice.get(f"/v2/spans/{sid}/metrics")).json()["meta"]["total_count"] == 1


async def test_spans_written_at_once_into_one_trace_keep_its_totals(
    endpoints: Endpoints, db: Database
) -> None:
    # Writers of one trace at once (each holds its transaction a moment before its commit, as a
    # request does): the trace's aggregates count every writer's span (services/traces.refresh).
    database = Database(endpoints.database_url, pool_size=25)
    try:
        async with database.session() as session:
            owner = User(email=f"{uuid.uuid4().hex[:10]}@example.com")
            session.add(owner)
            await session.commit()
            project = await traces.default_project(session, owner.id)
            trace_pk = await traces.ensure_trace(session, owner.id, project, "one-trace")
            await session.commit()
            owner_id = owner.id

        async def write(number: int) -> None:
            now = datetime.now(UTC)
            async with database.session() as session:
                await traces.upsert_spans(
                    session,
                    owner_id,
                    trace_pk,
                    [SpanWrite(span_id=f"s{number}", name="s", kind="llm", start_time=now, input_tokens=1)],
                )
                await asyncio.sleep(0.01)
                await session.commit()

        for wave in range(3):
            await asyncio.gather(*(write(wave * 100 + n) for n in range(20)))
        async with database.session() as session:
            trace = await session.get(Trace, trace_pk)
            assert trace is not None and (trace.span_count, trace.input_tokens) == (60, 60)
    finally:
        await database.dispose()
