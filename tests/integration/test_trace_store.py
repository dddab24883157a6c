"""The trace store's one write path (services/traces.py): upserts that a retry cannot double, and
aggregates recomputed from the spans in the same transaction."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from core.db import Database
from core.db.models import Agent, Event, Project, Session, Span, Trace, User
from core.schemas.traces import SpanWrite
from services import traces

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


async def _user(db: Database) -> uuid.UUID:
    async with db.session() as s:
        user = User(email=f"{uuid.uuid4().hex[:10]}@example.com")
        s.add(user)
        await s.commit()
        return user.id


async def test_one_default_project_even_when_asked_for_at_once(db: Database) -> None:
    owner = await _user(db)

    async def ask() -> uuid.UUID:
        async with db.session() as s:
            made = await traces.default_project(s, owner)
            await s.commit()
            return made

    first, second = await asyncio.gather(ask(), ask())
    assert first == second
    async with db.session() as s:
        assert len((await s.execute(select(Project).where(Project.owner_id == owner))).scalars().all()) == 1


def _spans() -> list[SpanWrite]:
    return [
        SpanWrite(
            span_id="root",
            name="turn",
            kind="agent",
            status="ok",
            start_time=T0,
            end_time=T0 + timedelta(seconds=3),
        ),
        SpanWrite(
            span_id="llm-1",
            parent_span_id="root",
            name="reason",
            kind="llm",
            status="ok",
            start_time=T0,
            end_time=T0 + timedelta(seconds=1),
            model="gpt-4o",
            input_tokens=10,
            output_tokens=5,
            cost=Decimal("0.001"),
        ),
        SpanWrite(
            span_id="tool-1",
            parent_span_id="root",
            name="add",
            kind="tool",
            status="error",
            error="boom",
            start_time=T0 + timedelta(seconds=1),
            end_time=T0 + timedelta(seconds=2),
        ),
        SpanWrite(
            span_id="llm-2",
            parent_span_id="root",
            name="reason",
            kind="llm",
            status="ok",
            start_time=T0 + timedelta(seconds=2),
            end_time=T0 + timedelta(seconds=3),
            model="claude-3",
            input_tokens=20,
            output_tokens=7,
            cost=Decimal("0.002"),
        ),
    ]


async def test_spans_upsert_once_and_the_trace_sums_them(db: Database) -> None:
    owner = await _user(db)
    for _ in range(2):  # a retried write changes nothing twice
        async with db.session() as s:
            project = await traces.default_project(s, owner)
            key = await traces.ensure_trace(s, owner, project, "trace-001", name="pipeline")
            await traces.upsert_spans(s, owner, key, _spans())
            await s.commit()
    async with db.session() as s:
        trace = (await s.execute(select(Trace).where(Trace.id == key))).scalar_one()
        spans = (await s.execute(select(Span).where(Span.trace_pk == key))).scalars().all()
    assert len(spans) == 4 and trace.span_count == 4 and trace.step_count == 3 and trace.error_count == 1
    assert (trace.started_at, trace.ended_at, trace.duration_ms) == (T0, T0 + timedelta(seconds=3), 3000)
    assert (trace.input_tokens, trace.output_tokens, trace.total_cost) == (30, 12, Decimal("0.003"))
    assert trace.models_used == ["claude-3", "gpt-4o"]
    # A span sent again with its output replaces what it says.
    async with db.session() as s:
        fixed = SpanWrite(
            span_id="tool-1",
            name="add",
            kind="tool",
            status="ok",
            output={"result": 3},
            start_time=T0 + timedelta(seconds=1),
            end_time=T0 + timedelta(seconds=2),
        )
        await traces.upsert_spans(s, owner, key, [fixed])
        await s.commit()
        trace = (await s.execute(select(Trace).where(Trace.id == key))).scalar_one()
        tool = (
            await s.execute(select(Span).where(Span.trace_pk == key, Span.span_id == "tool-1"))
        ).scalar_one()
    assert trace.error_count == 0 and tool.output == {"result": 3} and tool.error is None


async def test_a_spans_references_reach_only_its_owners_records(db: Database) -> None:
    """An ingested span's metadata is the client's: an `input_event_id` naming another account's
    stored event must not read that event (its tool call's arguments) into the span's input."""
    alice, bob = await _user(db), await _user(db)
    async with db.session() as s:
        agent = Agent(owner_id=alice, name="a")
        s.add(agent)
        await s.flush()
        session = Session(agent_id=agent.id)
        s.add(session)
        await s.flush()
        started = Event(
            session_id=session.id,
            sequence=1,
            type="tool.call_started",
            data={"tool_call": {"id": "c1", "name": "lookup", "arguments": {"secret": "alice's"}}},
        )
        s.add(started)
        await s.commit()
    pointing = {"input_event_id": str(started.id)}
    spans = {}
    for owner in (alice, bob):
        async with db.session() as s:
            project = await traces.default_project(s, owner)
            trace_pk = await traces.ensure_trace(s, owner, project, "t-1")
            await traces.upsert_spans(
                s, owner, trace_pk, [SpanWrite(span_id="tool", name="lookup", kind="tool", metadata=pointing)]
            )
            await s.commit()
            spans[owner] = (await s.execute(select(Span).where(Span.trace_pk == trace_pk))).scalar_one()
    async with db.session() as s:
        contents = await traces.span_contents(s, list(spans.values()))
    assert contents[spans[alice].id][0] == {"name": "lookup", "arguments": {"secret": "alice's"}}
    assert contents[spans[bob].id][0] is None
