"""001's batch ingestion (`POST /v1/traces`) and span events, through the store's one write path
(`services.traces.upsert_spans`). A batch is checked whole before anything is written and written in
one transaction: all of it lands, or none (a retry is then safe: spans are upserted by id)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.traces import Span, SpanEvent, Trace
from core.errors import InvalidInput, NotFound
from core.identity import Identity
from core.schemas import trace_api as schema
from core.schemas.traces import SpanWrite
from services import projects
from services.traces import ensure_trace, upsert_spans

MAX_ID_CHARS = 255  # the columns' width (trace_id, span_id, parent_span_id, model, provider)
MAX_KIND_CHARS = 60


def _utc(moment: datetime | None) -> datetime | None:
    # A time without a zone is taken as UTC (001's examples all say Z).
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _check(batch: schema.IngestBatch, max_spans: int, max_field_bytes: int) -> str:
    """The batch's one trace id, or a 400 naming the first bad field."""
    if not batch.spans:
        raise InvalidInput("spans: a batch needs at least one span", field="spans")
    if len(batch.spans) > max_spans:
        raise InvalidInput(f"spans: at most {max_spans} spans per batch (TRACE_MAX_SPANS)", field="spans")
    trace_id = batch.spans[0].trace_id
    seen: set[str] = set()
    for i, span in enumerate(batch.spans):
        at = f"spans[{i}]"
        for name, value, width in (
            ("trace_id", span.trace_id, MAX_ID_CHARS),
            ("span_id", span.span_id, MAX_ID_CHARS),
            ("parent_span_id", span.parent_span_id, MAX_ID_CHARS),
            ("kind", span.kind, MAX_KIND_CHARS),
            ("model", span.model, MAX_ID_CHARS),
            ("provider", span.provider, MAX_ID_CHARS),
        ):
            if value is not None and len(value) > width:
                raise InvalidInput(f"{at}.{name}: at most {width} characters", field=f"{at}.{name}")
        if not span.trace_id:
            raise InvalidInput(f"{at}.trace_id: may not be empty", field=f"{at}.trace_id")
        if not span.span_id:
            raise InvalidInput(f"{at}.span_id: may not be empty", field=f"{at}.span_id")
        if span.trace_id != trace_id:
            raise InvalidInput(
                f"{at}.trace_id: every span of a batch belongs to one trace ({trace_id!r})",
                field=f"{at}.trace_id",
            )
        if span.span_id in seen:
            raise InvalidInput(f"{at}.span_id: {span.span_id!r} is twice in the batch", field=f"{at}.span_id")
        seen.add(span.span_id)
        start, end = _utc(span.start_time), _utc(span.end_time)
        if start is not None and end is not None and end < start:
            raise InvalidInput(f"{at}.end_time: before start_time", field=f"{at}.end_time")
        for name, number in (
            ("input_tokens", span.input_tokens),
            ("output_tokens", span.output_tokens),
            ("cost", span.cost),
        ):
            if number is not None and number < 0:
                raise InvalidInput(f"{at}.{name}: may not be negative", field=f"{at}.{name}")
        for name, content in (
            ("input", span.input),
            ("output", span.output),
            ("metadata", span.metadata),
            ("error", span.error),
        ):
            if content is not None and len(msgspec.json.encode(content)) > max_field_bytes:
                raise InvalidInput(
                    f"{at}.{name}: larger than {max_field_bytes} bytes (TRACE_MAX_FIELD_BYTES)",
                    field=f"{at}.{name}",
                )
    return trace_id


def _write(span: schema.IngestSpan) -> SpanWrite:
    return SpanWrite(
        span_id=span.span_id,
        name=span.name,
        parent_span_id=span.parent_span_id,
        kind=span.kind or "custom",  # any other kind is kept as given: a custom kind
        status=span.status,
        input=span.input,
        output=span.output,
        error=span.error,
        metadata=span.metadata,
        start_time=_utc(span.start_time),
        end_time=_utc(span.end_time),
        model=span.model,
        provider=span.provider,
        input_tokens=span.input_tokens,
        output_tokens=span.output_tokens,
        cost=Decimal(str(span.cost)) if span.cost is not None else None,
    )


async def ingest(
    db: AsyncSession, who: Identity, batch: schema.IngestBatch, *, max_spans: int, max_field_bytes: int
) -> schema.Ingested:
    trace_id = _check(batch, max_spans, max_field_bytes)
    project_id = await projects.resolve(db, who, batch.project_id)
    existing = await db.scalar(
        select(Trace.project_id).where(Trace.owner_id == who.user_id, Trace.trace_id == trace_id)
    )
    if existing is not None and existing != project_id:
        # A trace lives in one project: a key of another project may not add to it (nor see it).
        if who.project_id is not None:
            raise NotFound("trace not found", field="spans[0].trace_id")
        raise InvalidInput(
            f"spans[0].trace_id: trace {trace_id!r} belongs to another project", field="spans[0].trace_id"
        )
    trace_pk = await ensure_trace(
        db,
        who.user_id,
        project_id,
        trace_id,
        name=batch.trace_name,
        metadata_=batch.trace_metadata or {},
        external_id=batch.external_id,
        user_id=str(who.user_id),
    )
    # A batch sent again (or a later batch) may name or describe its trace: what it says wins.
    named = {
        column: value
        for column, value in (
            ("name", batch.trace_name),
            ("metadata_", batch.trace_metadata),
            ("external_id", batch.external_id),
        )
        if value is not None
    }
    if named:
        await db.execute(update(Trace).where(Trace.id == trace_pk).values(**named))
    await upsert_spans(db, who.user_id, trace_pk, [_write(s) for s in batch.spans])
    await _replace_events(db, trace_pk, batch.spans)
    await _derive_status(db, trace_pk)
    await db.commit()
    return schema.Ingested(trace_id=trace_id, span_count=len(batch.spans))


async def _replace_events(db: AsyncSession, trace_pk: uuid.UUID, spans: list[schema.IngestSpan]) -> None:
    """A span that comes with `events` gets exactly those (sent again: the same ones, not twice); a
    span sent without events keeps the ones it has (appended through the events route)."""
    carrying = [s for s in spans if s.events]
    if not carrying:
        return
    found = await db.execute(
        select(Span.span_id, Span.id).where(
            Span.trace_pk == trace_pk, Span.span_id.in_([s.span_id for s in carrying])
        )
    )
    keys = {span_id: key for span_id, key in found}
    await db.execute(delete(SpanEvent).where(SpanEvent.span_pk.in_(list(keys.values()))))
    now = datetime.now(UTC)
    db.add_all(
        SpanEvent(
            span_pk=keys[s.span_id],
            name=e.name,
            timestamp=_utc(e.timestamp) or now,
            attributes=e.attributes,
        )
        for s in carrying
        for e in s.events
    )


async def _derive_status(db: AsyncSession, trace_pk: uuid.UUID) -> None:
    """An ingested trace's status follows its spans: `error` once any span failed, `ok` once any
    span says ok, else what it was (`unset`, or what a PATCH set)."""
    any_ok = select(Span.id).where(Span.trace_pk == trace_pk, Span.status == "ok").exists()
    await db.execute(
        update(Trace)
        .where(Trace.id == trace_pk)
        .values(status=case((Trace.error_count > 0, "error"), (any_ok, "ok"), else_=Trace.status))
    )


async def add_event(
    db: AsyncSession, who: Identity, trace_id: str, span_id: str, data: schema.AddEvent
) -> schema.SpanEventOut:
    query = (
        select(Span.id)
        .join(Trace, Trace.id == Span.trace_pk)
        .where(Trace.owner_id == who.user_id, Trace.trace_id == trace_id, Span.span_id == span_id)
    )
    if who.project_id is not None:
        query = query.where(Trace.project_id == who.project_id)
    span_pk = await db.scalar(query)
    if span_pk is None:
        trace_query = select(Trace.id).where(Trace.owner_id == who.user_id, Trace.trace_id == trace_id)
        if who.project_id is not None:
            trace_query = trace_query.where(Trace.project_id == who.project_id)
        raise NotFound("span not found" if await db.scalar(trace_query) else "trace not found")
    event = SpanEvent(
        span_pk=span_pk,
        name=data.name,
        timestamp=_utc(data.timestamp) or datetime.now(UTC),
        attributes=data.attributes,
    )
    db.add(event)
    await db.commit()
    return schema.SpanEventOut(name=event.name, timestamp=event.timestamp, attributes=event.attributes)
