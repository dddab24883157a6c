"""An agent's turn as a trace: the projection of a step's stored events onto spans.

`project` runs wherever a step's events are stored (`events.append_many`, in the same transaction),
so every path that stores a turn's events (the loop's steps, the API's client tool results, the
sweeper closing a stranded turn) writes the turn's spans with them: spans and events commit
together and never disagree. A span's id comes from the step's idempotency key, and a retried step
gets its stored events back (`append_many`), so it maps them onto the same spans: an upsert that
writes nothing twice.

The mapping (docs/traces.md, "Agent turns as traces"):
- the turn → a trace (`trace_id` = the turn id) with a root span of kind `agent` (`span_id` = the
  turn id), from `turn.started` to the turn's end (`turn.completed` ok; `turn.failed`,
  `turn.cancelled` error);
- each `reason` step → an `llm` span `{turn}:llm:{iteration}` (`reason.started` → `llm.generation`,
  whose event is its content);
- each tool call → a `tool` span `{turn}:tool:{call id}` (`tool.call_started` →
  `tool.call_completed`, whose event is its content).

Migration 0015 makes the same spans in SQL for the turns stored before it: a change here is a
change there."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Agent, Event, Project, Replay, Session, Span, Trace
from core.schemas.traces import SpanStatus, SpanWrite
from services import traces

ROOT_KIND = "agent"
LLM_NAME = "reason"
# The error of a step its turn ended without (a cancel, a failure, an interrupted tool call).
UNFINISHED = "the step did not finish: its turn ended first"
CANCELLED = "the turn was cancelled"
ENDS = {"turn.completed": "completed", "turn.failed": "failed", "turn.cancelled": "cancelled"}
TYPES = frozenset(
    {
        "turn.started",
        "reason.started",
        "llm.generation",
        "message.agent",
        "tool.call_started",
        "tool.call_completed",
        *ENDS,
    }
)


def llm_span_id(turn_id: str, iteration: int | str) -> str:
    return f"{turn_id}:llm:{iteration}"


def tool_span_id(turn_id: str, tool_call_id: str) -> str:
    return f"{turn_id}:tool:{tool_call_id}"


async def project(db: AsyncSession, session_id: uuid.UUID, stored: Iterable[Event]) -> None:
    """Writes the spans of a step's stored events (the caller's transaction, which holds the
    session row's lock). A batch without a turn's span events (a user message) costs nothing; a
    step's costs four statements (the trace's key, the spans' upsert, the trace row's lock, the
    aggregates: the lock keeps concurrent writers' totals whole), the turn's
    first step one or two more (its trace), its end two more (its open steps closed, its status)."""
    by_turn: dict[str, list[Event]] = {}
    for event in stored:
        turn_id = (event.context or {}).get("turn_id")
        if event.type in TYPES and isinstance(turn_id, str) and event.idempotency_key:
            by_turn.setdefault(turn_id, []).append(event)
    for turn_id, events in by_turn.items():
        await _project_turn(db, session_id, turn_id, events)


async def _project_turn(db: AsyncSession, session_id: uuid.UUID, turn_id: str, events: list[Event]) -> None:
    found = (await db.execute(_TURN_KEYS, {"session_id": session_id, "turn_id": turn_id})).first()
    if found is None:
        return  # the session is gone: its events were not stored either
    owner_id, agent_id, agent_name, project_id, trace_pk, replay_id, replay_of = found
    if trace_pk is None:
        if project_id is None:
            project_id = await traces.default_project(db, owner_id)
        # A forked session's turn (an Opswald replay) links to the original from the start, so
        # analytics and drift leave it out while it runs, as after (services/forks.py).
        linked = {"replay_of": replay_of, "replay_id": str(replay_id)} if replay_id is not None else {}
        trace_pk = await traces.ensure_trace(
            db,
            owner_id,
            project_id,
            turn_id,
            name=agent_name,
            session_id=str(session_id),
            agent_id=agent_id,
            user_id=str(owner_id),
            **({"metadata_": linked} if linked else {}),
        )
    spans = spans_of(turn_id, agent_name, events)
    end = next((e for e in events if e.type in ENDS), None)
    if end is not None:
        spans += await _unfinished(db, trace_pk, turn_id, end.ts, {s.span_id for s in spans})
    await traces.upsert_spans(db, owner_id, trace_pk, spans, merge=True)
    if end is not None:
        outcome = ENDS[end.type]
        await db.execute(
            update(Trace)
            .where(Trace.id == trace_pk)
            .values(
                status="ok" if outcome == "completed" else "error",
                metadata_=Trace.metadata_.op("||")({"outcome": outcome}),
            )
        )


# One statement: the owner, the agent, and the trace's key when the turn has one already. Built once
# (every step of every turn runs it): its cache key is computed once and kept on it.
_TURN_KEYS = (
    select(
        Agent.owner_id,
        Agent.id,
        Agent.name,
        Project.id,
        Trace.id,
        Replay.id,
        Replay.original_trace_id,
    )
    .select_from(Session)
    .join(Agent, Agent.id == Session.agent_id)
    .outerjoin(Replay, Replay.id == Session.replay_id)
    .outerjoin(Project, and_(Project.owner_id == Agent.owner_id, Project.is_default))
    .outerjoin(Trace, and_(Trace.owner_id == Agent.owner_id, Trace.trace_id == bindparam("turn_id")))
    .where(Session.id == bindparam("session_id"))
)


def spans_of(turn_id: str, agent_name: str, events: Iterable[Event]) -> list[SpanWrite]:
    """The spans a batch of one turn's stored events says something about, each once (a span's
    pieces in one batch merged as `upsert_spans(merge=True)` merges them in the table)."""
    out: dict[str, SpanWrite] = {}
    for event in events:
        made = _span_of(turn_id, agent_name, event)
        if made is not None:
            earlier = out.get(made.span_id)
            out[made.span_id] = made if earlier is None else merged(earlier, made)
    return list(out.values())


def _span_of(turn_id: str, agent_name: str, event: Event) -> SpanWrite | None:
    data: dict[str, Any] = event.data or {}
    key = str(event.idempotency_key)
    ts = event.ts
    if event.type == "turn.started":
        return _root(
            turn_id, agent_name, start_time=ts, source_message_id=_uuid(data.get("input_message_id"))
        )
    if event.type in ENDS:
        outcome = ENDS[event.type]
        status: SpanStatus = "ok" if outcome == "completed" else "error"
        error = data.get("error") if outcome == "failed" else CANCELLED if outcome == "cancelled" else None
        metadata: dict[str, Any] = {"outcome": outcome}
        if data.get("error_code"):
            metadata["error_code"] = data["error_code"]
        return _root(
            turn_id,
            agent_name,
            end_time=ts,
            status=status,
            error=error,
            source_event_id=event.id,
            metadata=metadata,
        )
    # A reason step's events are keyed `{turn}:{iteration}:{type}` (a failed turn's notice is
    # `{turn}:notice:message.agent`: not a step).
    step = key.split(":")[1] if key.count(":") >= 2 else ""
    if event.type in ("reason.started", "llm.generation", "message.agent"):
        if not step.isdigit():
            return None
        span = SpanWrite(
            span_id=llm_span_id(turn_id, step),
            parent_span_id=turn_id,
            name=LLM_NAME,
            kind="llm",
            metadata={"iteration": int(step)},
        )
        if event.type == "reason.started":
            return msgspec.structs.replace(span, start_time=ts, model=data.get("metadata", {}).get("model"))
        if event.type == "message.agent":
            return msgspec.structs.replace(span, source_message_id=_uuid(data.get("message", {}).get("id")))
        meta = data.get("metadata", {})
        usage = meta.get("usage", {})
        duration = meta.get("duration_ms")
        return msgspec.structs.replace(
            span,
            status="ok",  # a failed call stores no generation: its span is closed with its turn
            # The call's start when `reason.started` is not at hand: the earliest start is kept.
            start_time=ts - timedelta(milliseconds=duration) if isinstance(duration, int) else None,
            end_time=ts,
            model=meta.get("model"),
            provider=meta.get("provider"),
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            cost=Decimal(str(meta["cost"])) if meta.get("cost") is not None else None,
            source_event_id=event.id,
        )
    if event.type == "tool.call_started":
        call = data.get("tool_call", {})
        return SpanWrite(
            span_id=tool_span_id(turn_id, call.get("id", "")),
            parent_span_id=turn_id,
            name=call.get("name", "tool"),
            kind="tool",
            start_time=ts,
            metadata={"tool_call_id": call.get("id"), "input_event_id": str(event.id)},
        )
    if event.type == "tool.call_completed":
        call_id = data.get("tool_call_id", "")
        ok = data.get("status") == "success"
        return SpanWrite(
            span_id=tool_span_id(turn_id, call_id),
            parent_span_id=turn_id,
            name=data.get("tool_name", "tool"),
            kind="tool",
            status="ok" if ok else "error",
            error=None if ok else data.get("error"),
            start_time=ts,  # a call that never started (denied, a client's): the earliest start is kept
            end_time=ts,
            source_event_id=event.id,
            metadata={"tool_call_id": call_id, "tool_status": data.get("status")},
        )
    return None


def _root(turn_id: str, agent_name: str, **fields: Any) -> SpanWrite:
    return SpanWrite(span_id=turn_id, name=agent_name, kind=ROOT_KIND, **fields)


async def _unfinished(
    db: AsyncSession, trace_pk: uuid.UUID, turn_id: str, ended: datetime, written: set[str]
) -> list[SpanWrite]:
    """The turn's steps still open when it ends (a failed call, a cancelled or interrupted tool
    call): closed with the turn, as errors."""
    rows = await db.execute(
        select(Span.span_id, Span.name, Span.kind).where(
            Span.trace_pk == trace_pk, Span.end_time.is_(None), Span.span_id != turn_id
        )
    )
    return [
        SpanWrite(
            span_id=span_id,
            parent_span_id=turn_id,
            name=name,
            kind=kind,
            status="error",
            error=UNFINISHED,
            end_time=ended,
        )
        for span_id, name, kind in rows
        if span_id not in written
    ]


def merged(first: SpanWrite, then: SpanWrite) -> SpanWrite:
    """`then` written over `first` as `upsert_spans(merge=True)` writes it over a stored span."""
    values = msgspec.structs.asdict(first)
    for name, value in msgspec.structs.asdict(then).items():
        if name == "metadata":
            values[name] = {**values[name], **value}
        elif name == "status":
            values[name] = values[name] if value == "unset" else value
        elif name == "start_time":
            values[name] = min((t for t in (values[name], value) if t is not None), default=None)
        elif value is not None:
            values[name] = value
    return SpanWrite(**values)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None
