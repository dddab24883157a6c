"""Opswald's events (`POST /v1/events`, `GET /v1/events/{id}`): each event of an outside app's
session is one step (span) of a trace, written through the store's one write path
(`services.traces.upsert_spans`).

Grouping (docs/traces.md, "Opswald's events"): an event with a `trace_id` goes to that trace; else
an event with a `session_id` goes to its session's trace, whose id is derived from the session id
(`trace_` + 32 hex of its SHA-256), so a retried event lands in the same trace whoever sends it;
an event with neither is a trace of its own. The event's id (the caller's `event_id` or `id`, else
a new `evt_...`) is the span's id: an event sent twice with its id is one span."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.traces import Span, Trace
from core.errors import InvalidInput, NotFound
from core.identity import Identity
from core.schemas import opswald as schema
from core.schemas.traces import SpanWrite
from services import projects
from services.ingest import MAX_ID_CHARS, MAX_KIND_CHARS
from services.traces import ensure_trace, upsert_spans

# Opswald's event types for the store's kinds; any other type is kept as its own (custom) kind.
KINDS = {"llm_call": "llm", "tool_call": "tool", "user_input": "user_input"}
EVENT_TYPES = {kind: event_type for event_type, kind in KINDS.items()}
# The `data` keys that fill the span's own fields; every other key is kept as given.
# (`name` and `duration_ms` stay there too: they name the span and give its end, and read back as sent.)
MAPPED = {"model", "provider", "input", "output", "cost", "tokens", "error", "status"}


def session_trace_id(session_id: str) -> str:
    """The trace of an outside app's session: derived from its id, so every event of the session,
    retried or not, from any process, lands in one trace."""
    return "trace_" + hashlib.sha256(session_id.encode()).hexdigest()[:32]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _number(data: dict[str, Any], key: str, at: str) -> Any:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidInput(f"{at}: a number, 0 or more", field=at)
    return value


def _tokens(data: dict[str, Any]) -> tuple[int | None, int | None]:
    tokens = data.get("tokens")
    if tokens is None:
        return None, None
    if not isinstance(tokens, dict):
        raise InvalidInput("data.tokens: an object {input, output}", field="data.tokens")
    found = []
    for side in ("input", "output"):
        value = tokens.get(side)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidInput(f"data.tokens.{side}: a whole number, 0 or more", field=f"data.tokens.{side}")
        found.append(value)
    return found[0], found[1]


def _text(data: dict[str, Any], key: str, width: int | None = MAX_ID_CHARS) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"data.{key}: a string", field=f"data.{key}")
    if width is not None and len(value) > width:
        raise InvalidInput(f"data.{key}: at most {width} characters", field=f"data.{key}")
    return value


def _span(event: schema.CreateEvent, span_id: str, max_field_bytes: int) -> SpanWrite:
    data = event.data
    kind = KINDS.get(event.event_type, event.event_type)
    model = _text(data, "model")
    provider = _text(data, "provider")
    name = _text(data, "name", None)
    cost = _number(data, "cost", "data.cost")
    duration = _number(data, "duration_ms", "data.duration_ms")
    input_tokens, output_tokens = _tokens(data)
    error = data.get("error")
    if error is not None and not isinstance(error, str):
        error = msgspec.json.encode(error).decode()  # Opswald's error objects ({type, message}) as JSON
    status = data.get("status")
    if status is not None and status not in ("ok", "error", "unset"):
        raise InvalidInput("data.status: ok, error or unset", field="data.status")
    extra = {k: v for k, v in data.items() if k not in MAPPED}
    for key, content in (("input", data.get("input")), ("output", data.get("output")), ("error", error)):
        if content is not None and len(msgspec.json.encode(content)) > max_field_bytes:
            raise InvalidInput(
                f"data.{key}: larger than {max_field_bytes} bytes (TRACE_MAX_FIELD_BYTES)",
                field=f"data.{key}",
            )
    if len(msgspec.json.encode(extra)) > max_field_bytes:
        raise InvalidInput(f"data: larger than {max_field_bytes} bytes (TRACE_MAX_FIELD_BYTES)", field="data")
    start = _utc(event.timestamp) or datetime.now(UTC)
    try:
        cost_decimal = Decimal(str(cost)) if cost is not None else None
    except InvalidOperation:  # pragma: no cover - a float always converts
        raise InvalidInput("data.cost: a number", field="data.cost") from None
    return SpanWrite(
        span_id=span_id,
        name=name or (model if kind == "llm" and model else event.event_type),
        parent_span_id=event.parent_id,
        kind=kind,
        status=status or ("error" if error else "ok"),
        input=data.get("input"),
        output=data.get("output"),
        error=error,
        # What lets GET /v1/events answer with the event as it came: its type, its session and user,
        # and the keys of `data` that have no column.
        metadata={
            "event_type": event.event_type,
            "event_session_id": event.session_id,
            "event_user_id": event.user_id,
            "event_data": extra,
        },
        start_time=start,
        end_time=start + timedelta(milliseconds=float(duration)) if duration is not None else start,
        model=model,
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost_decimal,
    )


def _check(event: schema.CreateEvent) -> None:
    if not event.event_type:
        raise InvalidInput("event_type: may not be empty", field="event_type")
    if len(event.event_type) > MAX_KIND_CHARS:
        raise InvalidInput(f"event_type: at most {MAX_KIND_CHARS} characters", field="event_type")
    for name in ("session_id", "trace_id", "event_id", "id", "user_id", "parent_id"):
        value = getattr(event, name)
        if value is not None and not value:
            raise InvalidInput(f"{name}: may not be empty", field=name)
        if value is not None and len(value) > MAX_ID_CHARS:
            raise InvalidInput(f"{name}: at most {MAX_ID_CHARS} characters", field=name)
    if event.event_id is not None and event.id is not None and event.event_id != event.id:
        raise InvalidInput("id: differs from event_id (send one of them)", field="id")


async def create(
    db: AsyncSession, who: Identity, event: schema.CreateEvent, *, max_field_bytes: int
) -> schema.EventCreated:
    _check(event)
    event_id = event.event_id or event.id or f"evt_{uuid.uuid4().hex}"
    span = _span(event, event_id, max_field_bytes)
    if event.trace_id is not None:
        trace_id = event.trace_id
    elif event.session_id is not None:
        trace_id = session_trace_id(event.session_id)
    else:
        trace_id = f"trace_{event_id}"[:MAX_ID_CHARS]
    project_id = await projects.resolve(db, who, None)
    found = (
        await db.execute(
            select(Trace.id, Trace.project_id).where(
                Trace.owner_id == who.user_id, Trace.trace_id == trace_id
            )
        )
    ).first()
    if found is not None and who.project_id is not None and found.project_id != who.project_id:
        # Another project's trace: a project key neither sees nor adds to it.
        raise NotFound("trace not found", field="trace_id")
    trace_pk = await ensure_trace(
        db,
        who.user_id,
        found.project_id if found is not None else project_id,
        trace_id,
        name=event.session_id or event.event_type,
        session_id=event.session_id,
        user_id=event.user_id or str(who.user_id),
    )
    if found is not None:
        # A trace made before the session or user was known learns them (never overwriting them).
        await db.execute(
            update(Trace)
            .where(Trace.id == trace_pk)
            .values(
                session_id=func.coalesce(Trace.session_id, event.session_id),
                user_id=case(
                    (Trace.user_id == str(who.user_id), event.user_id or Trace.user_id), else_=Trace.user_id
                ),
            )
        )
    await upsert_spans(db, who.user_id, trace_pk, [span])
    # The trace's status follows its events: failed once one failed, else ok once one arrived.
    await db.execute(
        update(Trace)
        .where(Trace.id == trace_pk)
        .values(
            status=case((Trace.error_count > 0, "error"), (Trace.status == "unset", "ok"), else_=Trace.status)
        )
    )
    await db.commit()
    return schema.EventCreated(
        event_id=event_id, processed=True, trace_id=trace_id, session_id=event.session_id
    )


async def get(db: AsyncSession, who: Identity, event_id: str) -> schema.EventOut:
    """An event as it was sent (the span's own fields put back into `data`). The newest span of that
    id among the caller's event spans (an event id is unique per trace)."""
    query = (
        select(Span, Trace.trace_id)
        .join(Trace, Trace.id == Span.trace_pk)
        .where(Span.owner_id == who.user_id, Span.span_id == event_id, Span.metadata_.has_key("event_type"))
        .order_by(Span.updated_at.desc())
        .limit(1)
    )
    if who.project_id is not None:
        query = query.where(Trace.project_id == who.project_id)
    row = (await db.execute(query)).first()
    if row is None:
        raise NotFound("event not found")
    span, trace_id = row
    meta = span.metadata_ or {}
    data: dict[str, Any] = dict(meta.get("event_data") or {})
    for key, value in (
        ("model", span.model),
        ("provider", span.provider),
        ("input", span.input),
        ("output", span.output),
        ("error", span.error),
        ("cost", float(span.cost) if span.cost is not None else None),
    ):
        if value is not None:
            data[key] = value
    if span.input_tokens is not None or span.output_tokens is not None:
        data["tokens"] = {"input": span.input_tokens or 0, "output": span.output_tokens or 0}
    return schema.EventOut(
        event_id=span.span_id,
        event_type=str(meta.get("event_type") or EVENT_TYPES.get(span.kind, span.kind)),
        session_id=meta.get("event_session_id"),
        trace_id=trace_id,
        user_id=meta.get("event_user_id"),
        parent_id=span.parent_span_id,
        data=data,
        timestamp=span.start_time,
        processed=True,
        status=span.status,
    )
