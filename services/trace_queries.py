"""Reading the trace store in `/v1`'s shape: 001's and Opswald's trace fields in one answer, the
filters of both on `GET /v1/traces` (each on an index of `traces`), Opswald's step list, `GET
/v1/spans`. Every query is the caller's rows only; a project key's, its project's only."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Select, and_, cast, delete, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.traces import Span, SpanEvent, Trace
from core.errors import InvalidInput, NotFound
from core.identity import Identity
from core.schemas import trace_api as schema
from core.schemas.traces import CONTAINER_KINDS
from services.traces import span_contents

# 001's status words and Opswald's, for the same three states (docs/traces.md).
OPSWALD_STATUS = {"ok": "completed", "error": "failed", "unset": "running"}
FROM_OPSWALD = {v: k for k, v in OPSWALD_STATUS.items()}
# Opswald's step types for the store's kinds; any other kind is its own type.
STEP_TYPES = {"llm": "llm_call", "tool": "tool_call", "user_input": "user_input"}


def status_of(given: str) -> str:
    """001's word for a status given in either vocabulary."""
    return FROM_OPSWALD.get(given, given)


def _owned(query: Select[Any], who: Identity) -> Select[Any]:
    query = query.where(Trace.owner_id == who.user_id)
    if who.project_id is not None:
        query = query.where(Trace.project_id == who.project_id)
    return query


async def get_trace(db: AsyncSession, who: Identity, trace_id: str) -> Trace:
    found: Trace | None = await db.scalar(_owned(select(Trace), who).where(Trace.trace_id == trace_id))
    if found is None:
        raise NotFound("trace not found")
    return found


# ------------------------------------------------------------------------------------------- lists


@dataclass(frozen=True, kw_only=True)
class TraceFilters:
    status: str | None = None
    start: datetime | None = None  # 001's start_date, Opswald's start_time
    end: datetime | None = None  # 001's end_date, Opswald's end_time
    error: bool | None = None
    model: str | None = None
    min_cost: float | None = None
    max_cost: float | None = None
    user_id: str | None = None
    project_id: uuid.UUID | None = None
    session_id: str | None = None


def _filtered(query: Select[Any], f: TraceFilters) -> Select[Any]:
    if f.status is not None:
        wanted = status_of(f.status)
        if wanted not in OPSWALD_STATUS:
            raise InvalidInput(
                "status: one of ok, error, unset (or Opswald's completed, failed, running)", field="status"
            )
        query = query.where(Trace.status == wanted)
    if f.start is not None:
        query = query.where(Trace.started_at >= f.start)
    if f.end is not None:
        query = query.where(Trace.started_at <= f.end)
    if f.error is not None:
        # Opswald's "error status": the trace's status (ingestion makes it `error` once a span fails).
        query = query.where(Trace.status == "error" if f.error else Trace.status != "error")
    if f.model is not None:
        # Containment on JSONB: the GIN index on models_used answers it.
        query = query.where(Trace.models_used.op("@>")(cast(literal([f.model], JSONB), JSONB)))
    if f.min_cost is not None:
        query = query.where(Trace.total_cost >= f.min_cost)
    if f.max_cost is not None:
        query = query.where(Trace.total_cost <= f.max_cost)
    if f.user_id is not None:
        query = query.where(Trace.user_id == f.user_id)
    if f.project_id is not None:
        query = query.where(Trace.project_id == f.project_id)
    if f.session_id is not None:
        query = query.where(Trace.session_id == f.session_id)
    return query


def _cursor(trace: Trace) -> str:
    raw = msgspec.json.encode([trace.started_at.isoformat() if trace.started_at else None, str(trace.id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime | None, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started, key = msgspec.json.decode(raw, type=tuple[datetime | None, uuid.UUID])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidInput("cursor: not a cursor this API gave", field="cursor") from None
    return started, key


def _keyset(query: Select[Any], cursor: str) -> Select[Any]:
    """Rows after the cursor's in the list's order (started_at desc, nulls last; then id desc)."""
    started, key = _after(cursor)
    if started is None:
        return query.where(Trace.started_at.is_(None), Trace.id < key)
    return query.where(
        or_(
            Trace.started_at < started,
            and_(Trace.started_at == started, Trace.id < key),
            Trace.started_at.is_(None),
        )
    )


async def list_traces(
    db: AsyncSession, who: Identity, f: TraceFilters, offset: int, limit: int, cursor: str | None
) -> schema.TraceList:
    query = _filtered(_owned(select(Trace), who), f)
    total = await db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    page = query.order_by(Trace.started_at.desc().nulls_last(), Trace.id.desc())
    # A cursor pages by keyset (stable while traces arrive); offset is then not used.
    page = _keyset(page, cursor) if cursor else page.offset(offset)
    rows = list((await db.scalars(page.limit(limit + 1))).all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _cursor(rows[-1]) if has_more and rows else None
    return schema.TraceList(
        traces=[schema.TraceSummary(**_fields(t), steps=t.step_count) for t in rows],
        total=total,
        offset=0 if cursor else offset,
        limit=limit,
        has_more=has_more,
        pagination=schema.Pagination(has_more=has_more, next_cursor=next_cursor),
    )


def _fields(t: Trace) -> dict[str, Any]:
    return {
        "trace_id": t.trace_id,
        "name": t.name,
        "status": t.status if t.status in OPSWALD_STATUS else "unset",
        "metadata": t.metadata_,
        "external_id": t.external_id,
        "project_id": t.project_id,
        "start_time": t.started_at,
        "end_time": t.ended_at,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "span_count": t.span_count,
        "id": t.trace_id,
        "run_status": OPSWALD_STATUS.get(t.status, "running"),
        "session_id": t.session_id,
        "agent_id": t.agent_id,
        "user_id": t.user_id,
        "started_at": t.started_at,
        "ended_at": t.ended_at,
        "duration_ms": t.duration_ms,
        "total_cost": float(t.total_cost),
        "total_tokens": schema.Tokens(input=t.input_tokens, output=t.output_tokens),
        "models_used": list(t.models_used),
        "step_count": t.step_count,
        "errors": t.error_count,
    }


# ------------------------------------------------------------------------------------------ detail


def _duration_ms(span: Span) -> int | None:
    if span.start_time is None or span.end_time is None:
        return None
    return int((span.end_time - span.start_time).total_seconds() * 1000)


async def _span_outs(
    db: AsyncSession, spans: Sequence[Span], trace_ids: dict[uuid.UUID, str]
) -> list[schema.SpanOut]:
    events: dict[uuid.UUID, list[schema.SpanEventOut]] = {}
    if spans:
        rows = await db.scalars(
            select(SpanEvent)
            .where(SpanEvent.span_pk.in_([s.id for s in spans]))
            .order_by(SpanEvent.timestamp, SpanEvent.id)
        )
        for e in rows:
            events.setdefault(e.span_pk, []).append(
                schema.SpanEventOut(name=e.name, timestamp=e.timestamp, attributes=e.attributes)
            )
    # An agent turn's span may reference its stored event or message instead of copying it: every
    # answer here reads the content through this one call.
    contents = await span_contents(db, list(spans))
    outs = []
    for s in spans:
        given, made = contents.get(s.id, (s.input, s.output))
        outs.append(
            schema.SpanOut(
                span_id=s.span_id,
                trace_id=trace_ids[s.trace_pk],
                parent_span_id=s.parent_span_id,
                name=s.name,
                kind=s.kind,
                status=s.status,
                input=given,
                output=made,
                error=s.error,
                metadata=s.metadata_,
                events=events.get(s.id, []),
                start_time=s.start_time,
                end_time=s.end_time,
                duration_ms=_duration_ms(s),
                model=s.model,
                provider=s.provider,
                input_tokens=s.input_tokens,
                output_tokens=s.output_tokens,
                cost=float(s.cost) if s.cost is not None else None,
                created_at=s.created_at,
                updated_at=s.updated_at,
            )
        )
    return outs


def _steps(spans: list[schema.SpanOut]) -> list[schema.Step]:
    steps = [s for s in spans if s.kind not in CONTAINER_KINDS]
    return [
        schema.Step(
            id=s.span_id,
            step_number=number,
            type=STEP_TYPES.get(s.kind, s.kind),
            name=s.name,
            status=s.status,
            timestamp=s.start_time,
            input=s.input,
            output=s.output,
            error=s.error,
            duration_ms=s.duration_ms or 0,
            cost=s.cost or 0.0,
            tokens=schema.Tokens(input=s.input_tokens or 0, output=s.output_tokens or 0),
            model=s.model,
        )
        for number, s in enumerate(steps, start=1)
    ]


async def detail(db: AsyncSession, who: Identity, trace_id: str) -> schema.TraceDetail:
    trace = await get_trace(db, who, trace_id)
    return await _detail(db, trace)


async def _detail(db: AsyncSession, trace: Trace) -> schema.TraceDetail:
    spans = (
        await db.scalars(
            select(Span)
            .where(Span.trace_pk == trace.id)
            .order_by(Span.start_time.asc().nulls_last(), Span.created_at, Span.id)
        )
    ).all()
    outs = await _span_outs(db, spans, {trace.id: trace.trace_id})
    return schema.TraceDetail(**_fields(trace), spans=outs, steps=_steps(outs))


async def update_trace(
    db: AsyncSession, who: Identity, trace_id: str, data: schema.UpdateTrace
) -> schema.TraceDetail:
    trace = await get_trace(db, who, trace_id)
    changes: dict[str, Any] = {}
    if data.status is not None:
        changes["status"] = status_of(data.status)
    if data.metadata is not None:
        changes["metadata_"] = data.metadata
    if data.name is not None:
        changes["name"] = data.name
    if changes:
        await db.execute(update(Trace).where(Trace.id == trace.id).values(**changes, updated_at=func.now()))
        await db.commit()
        await db.refresh(trace)
    return await _detail(db, trace)


async def delete_trace(db: AsyncSession, who: Identity, trace_id: str) -> schema.TraceDeleted:
    trace = await get_trace(db, who, trace_id)
    # Spans, their events and metrics go with it (ON DELETE CASCADE).
    await db.execute(delete(Trace).where(Trace.id == trace.id))
    await db.commit()
    return schema.TraceDeleted(deleted=True, trace_id=trace_id)


# ------------------------------------------------------------------------------------------- spans


async def list_spans(
    db: AsyncSession,
    who: Identity,
    *,
    kind: str | None,
    status: str | None,
    trace_id: str | None,
    offset: int,
    limit: int,
) -> schema.SpanList:
    query = select(Span).where(Span.owner_id == who.user_id)
    # `Span.owner_id` scopes the rows; `traces` is joined only when a filter reads it (a project
    # key's project, the caller's trace id): joining every span to its trace made each page and its
    # `total` a hash join of the account's whole store (docs/benchmarks.md, 1,000,000 spans).
    if who.project_id is not None or trace_id is not None:
        query = _owned(query.join(Trace, Trace.id == Span.trace_pk), who)
    if kind is not None:
        query = query.where(Span.kind == kind)
    if status is not None:
        query = query.where(Span.status == status)
    if trace_id is not None:
        query = query.where(Trace.trace_id == trace_id)
    total = await db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = (
        await db.scalars(
            query.order_by(Span.start_time.desc().nulls_last(), Span.id.desc()).offset(offset).limit(limit)
        )
    ).all()
    found = await db.execute(select(Trace.id, Trace.trace_id).where(Trace.id.in_({s.trace_pk for s in rows})))
    names = {key: name for key, name in found}
    return schema.SpanList(spans=await _span_outs(db, rows, names), total=total, offset=offset, limit=limit)
