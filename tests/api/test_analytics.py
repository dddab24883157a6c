"""Usage and cost analytics (Opswald's /v1/analytics/usage and /cost, Opper's /v2/analytics/usage)
from known traces on the real stack with full auth: the sums, the buckets, the models, the users,
the trends, malformed parameters (400 under /v1, Opper's 422 under /v2), and another account's
traces never counted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text

from core.db import Database
from core.db.models import Span, Trace, User
from everloop.stack import Endpoints
from services import analytics, traces
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.apps import app_for


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


NOW = datetime.now(UTC)


async def _call(
    who: As, session: str, user: str, ago: timedelta, model: str, cost: float, tokens: int
) -> None:
    sent = await who.post(
        "/v1/events",
        {
            "event_type": "llm_call",
            "session_id": session,
            "user_id": user,
            "data": {"model": model, "cost": cost, "tokens": {"input": tokens, "output": tokens // 10}},
            "timestamp": (NOW - ago).isoformat(),
        },
    )
    assert sent.status_code == 201, sent.text


async def _world(client: AsyncTestClient[Litestar]) -> As:
    """Alice: trace s1 an hour ago (gpt-4o 0.10 and claude 0.30, user u1), s2 three days ago
    (gpt-4o 0.20, u2), s3 ten days ago (gpt-4o 1.00, u1), s4 forty days ago (gpt-4o 5.00, u1).
    Bob: 100.00 an hour ago, never in Alice's figures."""
    alice = As(client, await register(client))
    hour, day = timedelta(hours=1), timedelta(days=1)
    await _call(alice, "s1", "u1", hour, "gpt-4o", 0.10, 100)
    await _call(alice, "s1", "u1", hour - timedelta(minutes=1), "claude-3", 0.30, 200)
    await _call(alice, "s2", "u2", 3 * day, "gpt-4o", 0.20, 50)
    await _call(alice, "s3", "u1", 10 * day, "gpt-4o", 1.00, 10)
    await _call(alice, "s4", "u1", 40 * day, "gpt-4o", 5.00, 10)
    bob = As(client, await register(client))
    await _call(bob, "s1", "u1", hour, "gpt-4o", 100.0, 1000)
    return alice


async def test_usage_over_each_period(client: AsyncTestClient[Litestar]) -> None:
    alice = await _world(client)
    week = (await alice.get("/v1/analytics/usage?period=7d&group_by=day")).json()
    assert (week["period"], week["group_by"], week["total_traces"]) == ("7d", "day", 2)
    assert week["total_cost"] == pytest.approx(0.6) and week["total_tokens"] == 110 + 220 + 55
    # Every day of the window is a bucket, the empty ones too, in order.
    dates = [d["date"] for d in week["daily"]]
    assert dates == sorted(dates) and len(dates) in (7, 8)
    assert sum(d["traces"] for d in week["daily"]) == 2
    assert sum(d["cost"] for d in week["daily"]) == pytest.approx(0.6)
    today = next(d for d in week["daily"] if d["date"] == (NOW - timedelta(hours=1)).date().isoformat())
    assert today["traces"] == 1 and today["cost"] == pytest.approx(0.4) and today["tokens"] == 330
    models = {m["model"]: m for m in week["top_models"]}
    assert models["gpt-4o"]["cost"] == pytest.approx(0.3) and models["gpt-4o"]["calls"] == 2
    assert models["gpt-4o"]["usage"] == pytest.approx(2 / 3) and models["claude-3"]["usage"] == pytest.approx(
        1 / 3
    )

    month = (await alice.get("/v1/analytics/usage?period=30d&group_by=week")).json()
    assert month["total_traces"] == 3 and month["total_cost"] == pytest.approx(1.6)
    assert sum(d["traces"] for d in month["daily"]) == 3 and 5 <= len(month["daily"]) <= 6
    quarter = (await alice.get("/v1/analytics/usage?period=90d&group_by=month")).json()
    assert quarter["total_traces"] == 4 and quarter["total_cost"] == pytest.approx(6.6)
    assert sum(d["traces"] for d in quarter["daily"]) == 4 and 3 <= len(quarter["daily"]) <= 4
    default = (await alice.get("/v1/analytics/usage")).json()
    assert (default["period"], default["group_by"], default["total_traces"]) == ("7d", "day", 2)


async def test_cost_by_model_by_user_and_trends(client: AsyncTestClient[Litestar]) -> None:
    alice = await _world(client)
    cost = (await alice.get("/v1/analytics/cost")).json()
    assert cost["period"] == "30d" and cost["total_cost"] == pytest.approx(1.6)
    assert cost["cost_by_model"] == {"gpt-4o": pytest.approx(1.3), "claude-3": pytest.approx(0.3)}
    assert cost["cost_by_user"] == {"u1": pytest.approx(1.4), "u2": pytest.approx(0.2)}
    assert cost["trends"]["daily_average"] == pytest.approx(1.6 / 30)
    # The last 7 days (0.60) against the 7 before (1.00).
    assert cost["trends"]["weekly_growth"] == pytest.approx(-0.4)
    day = (await alice.get("/v1/analytics/cost?period=1d")).json()
    assert day["total_cost"] == pytest.approx(0.4) and day["cost_by_user"] == {"u1": pytest.approx(0.4)}
    assert day["trends"]["weekly_growth"] == pytest.approx(-0.4)  # whatever the period


async def test_opper_usage_buckets_llm_calls(client: AsyncTestClient[Litestar]) -> None:
    alice = await _world(client)
    usage = (await alice.get("/v2/analytics/usage")).json()
    assert sum(r["count"] for r in usage["data"]) == 4  # the 40-day-old call is outside 30 days
    assert sum(r["cost"] for r in usage["data"]) == pytest.approx(1.6)
    assert usage["meta"]["total_count"] == len(usage["data"]) == 3 and usage["meta"]["granularity"] == "day"
    first = usage["data"][-1]
    assert (first["input_tokens"], first["output_tokens"], first["total_tokens"]) == (300, 30, 330)
    by_model = (await alice.get("/v2/analytics/usage?group_by=model&granularity=month")).json()
    per_model: dict[str, int] = {}
    for row in by_model["data"]:
        per_model[row["model"]] = per_model.get(row["model"], 0) + row["count"]
    assert per_model == {"gpt-4o": 3, "claude-3": 1}
    window = (
        await client.get(
            "/v2/analytics/usage",
            params={"from_date": (NOW - timedelta(days=5)).isoformat(), "to_date": NOW.isoformat()},
            headers=alice.headers,
        )
    ).json()
    assert sum(r["count"] for r in window["data"]) == 3


async def test_malformed_parameters(client: AsyncTestClient[Litestar]) -> None:
    alice = As(client, await register(client))
    for path, name in (
        ("/v1/analytics/usage?period=2d", "period"),
        ("/v1/analytics/usage?group_by=year", "group_by"),
        ("/v1/analytics/cost?period=forever", "period"),
    ):
        answer = await alice.get(path)
        assert answer.status_code == 400, answer.text
        assert name in answer.text and answer.json()["status"] == 400
    for query, name in (
        ("granularity=fortnight", "granularity"),
        ("group_by=user", "group_by"),
        ("from_date=2026-03-02T00:00:00Z&to_date=2026-03-01T00:00:00Z", "from_date"),
        ("from_date=yesterday", "from_date"),
    ):
        answer = await alice.get(f"/v2/analytics/usage?{query}")
        assert answer.status_code == 422, answer.text
        assert list(answer.json()) == ["detail"] and name in answer.json()["detail"], answer.text
    client.cookies.clear()  # registering left a session cookie on the client
    assert (await client.get("/v1/analytics/usage")).status_code == 401
    assert list((await client.get("/v2/analytics/usage")).json()) == ["detail"]


def _span(span_id: str, trace_id: str, **fields: Any) -> dict[str, Any]:
    at = (NOW - timedelta(minutes=5)).isoformat()
    return {
        "span_id": span_id,
        "trace_id": trace_id,
        "name": span_id,
        "start_time": at,
        "end_time": at,
        **fields,
    }


async def test_a_roll_up_is_the_writers_mark_not_a_kind(client: AsyncTestClient[Litestar]) -> None:
    """A client's span of type `call` is usage like any other span (only a `/v2/call`'s own span,
    marked `metadata.rollup` by its writer, restates its children's); a client may mark its own
    restating span the same way."""
    alice = As(client, await register(client))
    usage = {"model": "gpt-4o", "input_tokens": 100, "output_tokens": 10, "cost": 0.5}
    plain = {"spans": [_span("call", "t-call", kind="call", status="ok", **usage)]}
    assert (await alice.post("/v1/traces", plain)).status_code == 201
    restating = {
        "spans": [
            _span("sum", "t-sum", kind="call", metadata={"rollup": True}, **usage),
            _span(
                "a", "t-sum", parent_span_id="sum", kind="llm", **{**usage, "cost": 0.2, "input_tokens": 40}
            ),
            _span(
                "b", "t-sum", parent_span_id="sum", kind="llm", **{**usage, "cost": 0.3, "input_tokens": 60}
            ),
        ]
    }
    assert (await alice.post("/v1/traces", restating)).status_code == 201
    call = (await alice.get("/v1/traces/t-call")).json()
    assert call["total_cost"] == pytest.approx(0.5) and call["total_tokens"] == {"input": 100, "output": 10}
    summed = (await alice.get("/v1/traces/t-sum")).json()
    assert summed["total_cost"] == pytest.approx(0.5) and summed["total_tokens"] == {
        "input": 100,
        "output": 20,
    }
    counted = (await alice.get("/v2/analytics/usage")).json()["data"]
    assert sum(r["count"] for r in counted) == 3  # the client's call and the two requests, not the sum
    assert sum(r["cost"] for r in counted) == pytest.approx(1.0)
    cost = (await alice.get("/v1/analytics/cost?period=1d")).json()
    assert cost["cost_by_model"] == {"gpt-4o": pytest.approx(1.0)}


async def test_the_calls_read_is_index_only(client: AsyncTestClient[Litestar], db: Database) -> None:
    # The analytics' `calls` skip roll-ups with the very text of ix_spans_llm_calls' predicate: the
    # planner proves the index covers them and reads the calls from it alone (migration 0029).
    alice = As(client, await register(client))
    await _call(alice, "s1", "u1", timedelta(hours=1), "gpt-4o", 0.10, 100)
    async with db.session() as session:
        owner = await session.scalar(select(Trace.owner_id))  # the one trace of the test's
        statement = analytics.V2_USAGE.format(project="", model_column="", model_group="")
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            (
                await session.execute(
                    text("EXPLAIN " + statement),
                    {"owner": owner, "start": NOW - timedelta(days=1), "end": NOW, "unit": "day"},
                )
            ).scalars()
        )
    assert "Index Only Scan using ix_spans_llm_calls" in plan, plan


async def test_migration_0029_marks_the_calls_stored_before(db: Database, endpoints: Endpoints) -> None:
    """Down to 0028 and up: a `/v2/call` span stored before the mark (its writer's metadata keys)
    is marked a roll-up and its trace's totals are summed again without it; a client's span of
    type `call` is left as it is, and counts."""
    from alembic import command

    from core.migrate import alembic_config, upgrade

    async with db.session() as session:
        owner = User(email=f"m29-{uuid.uuid4().hex[:8]}@example.com")
        session.add(owner)
        await session.commit()
        project = await traces.default_project(session, owner.id)
        # As the code before 0029 left them: the call's restated usage summed with its requests'.
        called = Trace(
            owner_id=owner.id, project_id=project, trace_id="called", total_cost=1, input_tokens=20
        )
        client_call = Trace(
            owner_id=owner.id, project_id=project, trace_id="client", total_cost=1, input_tokens=7
        )
        session.add_all([called, client_call])
        await session.flush()
        meta = {"tags": {}, "cached": False, "models": ["m"], "instructions": None, "output_schema": None}
        session.add_all(
            [
                Span(
                    owner_id=owner.id,
                    trace_pk=called.id,
                    span_id="c",
                    name="c",
                    kind="call",
                    metadata_=meta,
                    model="m",
                    cost=Decimal("0.5"),
                    input_tokens=10,
                ),
                Span(
                    owner_id=owner.id,
                    trace_pk=called.id,
                    span_id="c.0",
                    parent_span_id="c",
                    name="r",
                    kind="llm",
                    model="m",
                    cost=Decimal("0.2"),
                    input_tokens=4,
                ),
                Span(
                    owner_id=owner.id,
                    trace_pk=called.id,
                    span_id="c.1",
                    parent_span_id="c",
                    name="r",
                    kind="llm",
                    model="m",
                    cost=Decimal("0.3"),
                    input_tokens=6,
                ),
                Span(
                    owner_id=owner.id,
                    trace_pk=client_call.id,
                    span_id="x",
                    name="x",
                    kind="call",
                    metadata_={"models": ["mine"]},
                    model="m",
                    cost=Decimal(1),
                    input_tokens=7,
                ),
            ]
        )
        await session.commit()
        keys = (called.id, client_call.id)
    try:
        await asyncio.to_thread(command.downgrade, alembic_config(endpoints.database_url), "0028")
        await asyncio.to_thread(upgrade, endpoints.database_url)
        async with db.session() as session:
            rows = await session.execute(
                select(Span.span_id, Span.metadata_["rollup"]).where(Span.kind == "call")
            )
            marks: dict[str, Any] = {span_id: mark for span_id, mark in rows}
            assert marks == {"c": True, "x": None}
            totals = {
                t.trace_id: (t.total_cost, t.input_tokens)
                for t in await session.scalars(select(Trace).where(Trace.id.in_(keys)))
            }
            assert totals == {"called": (Decimal("0.5"), 10), "client": (Decimal(1), 7)}
    finally:
        await asyncio.to_thread(upgrade, endpoints.database_url)
