"""Opper's `/v2` spans, span metrics and traces over the one trace store. Spans are written through
`services.traces.upsert_spans` like every other writer's; a span is the caller's (owner) or absent.

A `/v2` span is addressed by its id alone (Opper's `GET /v2/spans/{id}`) while the store keys spans
by (trace, span id): ids from Opper's clients are UUIDs, unique anyway; where two of the caller's
traces hold a span of the same id (001's "span-1" in two batches), the most recently written wins."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.traces import Span, SpanMetric, Trace
from core.errors import NotFound
from core.identity import Identity
from core.schemas import v2_traces as schema
from core.schemas.traces import SpanStatus, SpanWrite
from services import traces

FEEDBACK_METRIC = "score"


# ------------------------------------------------------------------------------------------- spans


async def _span(db: AsyncSession, who: Identity, span_id: str) -> tuple[Span, Trace]:
    found = (
        await db.execute(
            select(Span, Trace)
            .join(Trace, Trace.id == Span.trace_pk)
            .where(Span.owner_id == who.user_id, Span.span_id == span_id)
            .order_by(Span.updated_at.desc(), Span.id.desc())
            .limit(1)
        )
    ).first()
    if found is None:
        raise NotFound("span not found")
    return found[0], found[1]


def _status(error: str | None, end: Any) -> SpanStatus:
    # Opper's spans carry no status: an error says it failed, an end time that it finished.
    if error:
        return "error"
    return "ok" if end is not None else "unset"


async def create_span(db: AsyncSession, who: Identity, data: schema.CreateSpan) -> schema.V2Span:
    trace_id = data.trace_id
    if trace_id is None and data.parent_id is not None:
        parent = await db.scalar(
            select(Trace.trace_id)
            .join(Span, Span.trace_pk == Trace.id)
            .where(Span.owner_id == who.user_id, Span.span_id == data.parent_id)
            .order_by(Span.updated_at.desc())
            .limit(1)
        )
        trace_id = parent  # an unknown parent (not sent yet): a new trace, as for a root
    trace_id = trace_id or str(uuid.uuid4())
    project_id = await traces.default_project(db, who.user_id)
    # A root span names its trace.
    trace_pk = await traces.ensure_trace(
        db, who.user_id, project_id, trace_id, **({} if data.parent_id else {"name": data.name})
    )
    if data.parent_id is None:
        await db.execute(
            update(Trace)
            .where(Trace.id == trace_pk)
            .values(name=func.coalesce(Trace.name, data.name), status=_status(data.error, data.end_time))
        )
    span = SpanWrite(
        span_id=data.id or str(uuid.uuid4()),
        parent_span_id=data.parent_id,
        name=data.name,
        kind=data.type or "custom",
        status=_status(data.error, data.end_time),
        input=data.input,
        output=data.output,
        error=data.error,
        metadata=data.meta or {},
        start_time=data.start_time,
        end_time=data.end_time,
    )
    await traces.upsert_spans(db, who.user_id, trace_pk, [span])
    await db.commit()
    return await get_span(db, who, span.span_id)


async def get_span(db: AsyncSession, who: Identity, span_id: str) -> schema.V2Span:
    span, trace = await _span(db, who, span_id)
    return (await to_schemas(db, [(span, trace.trace_id)]))[0]


async def update_span(
    db: AsyncSession, who: Identity, span_id: str, data: schema.UpdateSpan
) -> schema.V2Span:
    span, trace = await _span(db, who, span_id)
    current = traces.as_write(span)
    changes: dict[str, Any] = {}
    for field, column in (
        ("name", "name"),
        ("type", "kind"),
        ("start_time", "start_time"),
        ("end_time", "end_time"),
        ("input", "input"),
        ("output", "output"),
        ("error", "error"),
        ("meta", "metadata"),
    ):
        value = getattr(data, field)
        if value is not msgspec.UNSET:
            changes[column] = {} if column == "metadata" and value is None else value
    if "error" in changes or "end_time" in changes:
        # Opper's PATCH adds output and an end: the span finished (or failed).
        changes["status"] = _status(changes.get("error", span.error), changes.get("end_time", span.end_time))
    await traces.upsert_spans(db, who.user_id, span.trace_pk, [msgspec.structs.replace(current, **changes)])
    if span.parent_span_id is None and "status" in changes:
        await db.execute(update(Trace).where(Trace.id == trace.id).values(status=changes["status"]))
    await db.commit()
    db.expire_all()
    return await get_span(db, who, span_id)


async def delete_span(db: AsyncSession, who: Identity, span_id: str) -> None:
    """Deletes the span (its events and metrics with it); its children stay, and the trace's
    aggregates follow."""
    span, _ = await _span(db, who, span_id)
    await db.execute(delete(Span).where(Span.id == span.id))
    await traces.refresh(db, span.trace_pk)
    await db.commit()


# ------------------------------------------------------------------------------------- span content


async def to_schemas(db: AsyncSession, rows: Sequence[tuple[Span, str]]) -> list[schema.V2Span]:
    """The spans with their content: a span of an agent turn that references its stored event or
    message instead of copying it answers with what that says (`traces.span_contents`)."""
    contents = await traces.span_contents(db, [s for s, _ in rows])
    out = []
    for span, trace_id in rows:
        given, made = contents[span.id]
        duration = (
            int((span.end_time - span.start_time).total_seconds() * 1000)
            if span.start_time is not None and span.end_time is not None
            else None
        )
        out.append(
            schema.V2Span(
                id=span.span_id,
                trace_id=trace_id,
                parent_id=span.parent_span_id,
                name=span.name,
                type=span.kind,
                status=span.status,
                start_time=span.start_time,
                end_time=span.end_time,
                duration_ms=duration,
                input=given,
                output=made,
                error=span.error,
                meta=span.metadata_ or {},
                model=span.model,
                provider=span.provider,
                input_tokens=span.input_tokens,
                output_tokens=span.output_tokens,
                cost=float(span.cost) if span.cost is not None else None,
                created_at=span.created_at,
                updated_at=span.updated_at,
            )
        )
    return out


# ------------------------------------------------------------------------------------------ metrics


def _metric(row: SpanMetric, span_id: str) -> schema.Metric:
    return schema.Metric(
        id=row.id,
        span_id=span_id,
        name=row.name,
        value=row.value,
        comment=row.comment,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def add_metric(
    db: AsyncSession, who: Identity, span_id: str, name: str, value: float, comment: str | None
) -> schema.Metric:
    span, _ = await _span(db, who, span_id)
    row = SpanMetric(span_pk=span.id, name=name, value=value, comment=comment)
    db.add(row)
    await db.commit()
    await db.refresh(row)
    return _metric(row, span.span_id)


async def list_metrics(
    db: AsyncSession, who: Identity, span_id: str, offset: int, limit: int
) -> schema.V2Page[schema.Metric]:
    span, _ = await _span(db, who, span_id)
    total = await db.scalar(select(func.count()).select_from(SpanMetric).where(SpanMetric.span_pk == span.id))
    rows = await db.scalars(
        select(SpanMetric)
        .where(SpanMetric.span_pk == span.id)
        .order_by(SpanMetric.created_at, SpanMetric.id)
        .offset(offset)
        .limit(limit)
    )
    return schema.V2Page(
        data=[_metric(r, span.span_id) for r in rows], meta=schema.ListMeta(total_count=total or 0)
    )


async def _owned_metric(
    db: AsyncSession, who: Identity, span_id: str, metric_id: uuid.UUID
) -> tuple[SpanMetric, Span]:
    span, _ = await _span(db, who, span_id)
    row = await db.scalar(select(SpanMetric).where(SpanMetric.id == metric_id, SpanMetric.span_pk == span.id))
    if row is None:
        raise NotFound("metric not found")
    return row, span


async def update_metric(
    db: AsyncSession, who: Identity, span_id: str, metric_id: uuid.UUID, data: schema.UpdateMetric
) -> schema.Metric:
    row, span = await _owned_metric(db, who, span_id, metric_id)
    for field in ("name", "value", "comment"):
        value = getattr(data, field)
        if value is not msgspec.UNSET:
            setattr(row, field, value)
    row.updated_at = func.now()
    await db.commit()
    await db.refresh(row)
    return _metric(row, span.span_id)


async def delete_metric(db: AsyncSession, who: Identity, span_id: str, metric_id: uuid.UUID) -> None:
    row, _ = await _owned_metric(db, who, span_id, metric_id)
    await db.delete(row)
    await db.commit()


# ------------------------------------------------------------------------------------------- traces


def _summary_fields(t: Trace) -> dict[str, Any]:
    return {
        "id": t.trace_id,
        "name": t.name,
        "start_time": t.started_at,
        "end_time": t.ended_at,
        "duration_ms": t.duration_ms,
        "status": t.status,
        "total_tokens": (t.input_tokens or 0) + (t.output_tokens or 0),
    }


def _trace(t: Trace) -> schema.V2Trace:
    return schema.V2Trace(
        **_summary_fields(t),
        input_tokens=t.input_tokens,
        output_tokens=t.output_tokens,
        total_cost=float(t.total_cost or 0),
        span_count=t.span_count,
        models_used=list(t.models_used or []),
        meta=t.metadata_ or {},
        session_id=t.session_id,
        user_id=t.user_id,
        created_at=t.created_at,
    )


async def list_traces(
    db: AsyncSession, who: Identity, name: str | None, offset: int, limit: int
) -> schema.V2Page[schema.TraceSummary]:
    query = select(Trace).where(Trace.owner_id == who.user_id)
    if name:
        # Opper's `name` filter: a case-insensitive part of the name (LIKE's wildcards taken literally).
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Trace.name.ilike(f"%{escaped}%", escape="\\"))
    total = await db.scalar(select(func.count()).select_from(query.subquery()))
    rows = await db.scalars(
        query.order_by(Trace.started_at.desc().nulls_last(), Trace.id.desc()).offset(offset).limit(limit)
    )
    return schema.V2Page(
        data=[schema.TraceSummary(**_summary_fields(t)) for t in rows],
        meta=schema.ListMeta(total_count=total or 0),
    )


async def _owned_trace(db: AsyncSession, who: Identity, trace_id: str) -> Trace:
    found = await db.scalar(select(Trace).where(Trace.owner_id == who.user_id, Trace.trace_id == trace_id))
    if found is None:
        raise NotFound("trace not found")
    return found


async def get_trace(db: AsyncSession, who: Identity, trace_id: str) -> schema.V2Trace:
    return _trace(await _owned_trace(db, who, trace_id))


async def trace_with_spans(db: AsyncSession, who: Identity, trace_id: str) -> schema.V2TraceWithSpans:
    trace = await _owned_trace(db, who, trace_id)
    spans = await db.scalars(
        select(Span).where(Span.trace_pk == trace.id).order_by(Span.start_time.nulls_last(), Span.created_at)
    )
    outs = await to_schemas(db, [(s, trace.trace_id) for s in spans])
    return schema.V2TraceWithSpans(**msgspec.structs.asdict(_trace(trace)), spans=outs)
