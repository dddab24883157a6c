"""The trace store's one write path: every writer (the loop's steps, 001's batches, Opswald's events,
Opper's spans, OTLP) upserts spans through `upsert_spans`, inside its own transaction, and the
trace's aggregates are recomputed from its spans in the same transaction, so the list filters never
disagree with the spans they summarise."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import msgspec
from sqlalchemy import Table, alias, case, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Agent, Event, Message, Session
from core.db.traces import Project, Span, Trace
from core.ids import uuid7
from core.schemas.traces import CONTAINER_KINDS, USAGE_COUNTED, SpanStatus, SpanWrite

DEFAULT_PROJECT_NAME = "Default"
_T = TypeVar("_T")


async def default_project(db: AsyncSession, owner_id: uuid.UUID) -> uuid.UUID:
    """The account's default project (made on first use): it holds the account's agent turns.
    Race-safe: two first uses insert one row (the partial unique index on `is_default`)."""
    found = await db.scalar(select(Project.id).where(Project.owner_id == owner_id, Project.is_default))
    if found is not None:
        return found
    await db.execute(
        insert(Project)
        .values(owner_id=owner_id, name=DEFAULT_PROJECT_NAME, is_default=True)
        .on_conflict_do_nothing(index_elements=["owner_id"], index_where=text("is_default"))
    )
    made = await db.scalar(select(Project.id).where(Project.owner_id == owner_id, Project.is_default))
    assert made is not None
    return made


async def ensure_trace(
    db: AsyncSession, owner_id: uuid.UUID, project_id: uuid.UUID, trace_id: str, **fields: Any
) -> uuid.UUID:
    """The trace's row key, inserting the trace when it is new (`fields`: name, metadata_,
    external_id, session_id, agent_id, user_id, status). An existing trace keeps its fields: a
    writer that means to change them says so (`update(Trace)`)."""
    key: uuid.UUID | None = await db.scalar(
        insert(Trace)
        .values(owner_id=owner_id, project_id=project_id, trace_id=trace_id, **fields)
        .on_conflict_do_nothing(index_elements=["owner_id", "trace_id"])
        .returning(Trace.id)
    )
    if key is not None:
        return key
    existing: uuid.UUID | None = await db.scalar(
        select(Trace.id).where(Trace.owner_id == owner_id, Trace.trace_id == trace_id)
    )
    assert existing is not None
    return existing


# `INSERT ... ON CONFLICT`'s `excluded` row, built once: `statement.excluded` makes a new alias of the
# table (a proxy per column) for every statement, which profiling under load put at ~5 ms of CPU each,
# and every step of every turn writes its spans through here. The SQL is the same.
_EXCLUDED = alias(Span.__table__, name="excluded").c


async def upsert_spans(
    db: AsyncSession,
    owner_id: uuid.UUID,
    trace_pk: uuid.UUID,
    spans: list[SpanWrite],
    *,
    merge: bool = False,
) -> None:
    """Inserts the spans, or updates those the trace already has (same `span_id`): a retried write
    changes nothing twice. Then the trace's aggregates follow. The caller commits.

    With `merge`, a write adds to the span instead of replacing it: a field left unset (None, status
    `unset`) keeps the stored value, metadata keys are merged, and `start_time` keeps the earliest
    start reported. For a writer that sends a span in pieces (an agent turn's step stores its start
    and its end in two transactions). The callers never send one `span_id` twice in a call."""
    if not spans:
        return
    rows = []
    for span in spans:
        values = msgspec.structs.asdict(span)
        values.update(owner_id=owner_id, trace_pk=trace_pk)
        rows.append(values)
    # One statement built once, the rows as its parameters (one pipelined round trip).
    await db.execute(_MERGE_SPANS if merge else _REPLACE_SPANS, rows)
    await refresh(db, trace_pk)


def _upsert_statement(*, merge: bool) -> Any:
    """`INSERT ... ON CONFLICT (trace_pk, span_id) DO UPDATE` of every `SpanWrite` field, on the table
    (its columns' names: `metadata`). Built once per `merge`: a statement made per call with the
    rows as `.values(rows)` (a multi-row VALUES) has no cache key, so SQLAlchemy compiled the whole
    statement again for every step of every turn (profiled: the worker's costliest statement); this
    one is compiled once, and its cache key is kept on the object."""
    stored = Span.__table__.c
    replaced: dict[str, Any] = {}
    for c in msgspec.structs.fields(SpanWrite):
        name = c.name
        if name == "span_id":
            continue
        if not merge:
            replaced[name] = _EXCLUDED[name]
        elif name == "metadata":
            replaced[name] = stored[name].op("||")(_EXCLUDED[name])
        elif name == "status":
            replaced[name] = case((_EXCLUDED[name] == "unset", stored[name]), else_=_EXCLUDED[name])
        elif name == "start_time":  # LEAST skips NULLs: the earliest start anyone reported
            replaced[name] = func.least(stored[name], _EXCLUDED[name])
        else:
            replaced[name] = func.coalesce(_EXCLUDED[name], stored[name])
    # A span sent again replaces (or adds to) what it says; `created_at` and the row key stay.
    return insert(cast(Table, Span.__table__)).on_conflict_do_update(
        index_elements=["trace_pk", "span_id"], set_={**replaced, "updated_at": func.now()}
    )


_REPLACE_SPANS = _upsert_statement(merge=False)
_MERGE_SPANS = _upsert_statement(merge=True)


# (S608: USAGE_COUNTED is a constant text, never a value.)
REFRESH = text(
    f"""
    UPDATE traces SET
        started_at = agg.started,
        ended_at = agg.ended,
        duration_ms = floor(extract(epoch FROM agg.ended - agg.started) * 1000),
        total_cost = agg.cost,
        input_tokens = agg.input_tokens,
        output_tokens = agg.output_tokens,
        span_count = agg.spans,
        step_count = agg.steps,
        error_count = agg.errors,
        models_used = agg.models,
        updated_at = now()
    FROM (
        SELECT
            min(start_time) AS started,
            max(coalesce(end_time, start_time)) AS ended,
            coalesce(sum(cost) FILTER (WHERE {USAGE_COUNTED}), 0) AS cost,
            coalesce(sum(input_tokens) FILTER (WHERE {USAGE_COUNTED}), 0) AS input_tokens,
            coalesce(sum(output_tokens) FILTER (WHERE {USAGE_COUNTED}), 0) AS output_tokens,
            count(*) AS spans,
            count(*) FILTER (WHERE kind <> ALL(:containers)) AS steps,
            count(*) FILTER (WHERE status = 'error') AS errors,
            coalesce(
                jsonb_agg(DISTINCT model ORDER BY model) FILTER (WHERE model IS NOT NULL), '[]'::jsonb
            ) AS models
        FROM spans WHERE trace_pk = :trace_pk
    ) AS agg
    WHERE traces.id = :trace_pk
    """  # noqa: S608
)


# The trace's row, locked until the writer's commit: in the mode an UPDATE of it takes (NO KEY
# UPDATE), which writers exclude each other with. Not FOR UPDATE: that one also waits for the KEY
# SHARE lock every span insert takes on its trace (the foreign key), so two writers that had each
# inserted a span would wait for each other (a deadlock).
LOCK_TRACE = text("SELECT id FROM traces WHERE id = :trace_pk FOR NO KEY UPDATE")


async def refresh(db: AsyncSession, trace_pk: uuid.UUID) -> None:
    """Recomputes the trace's aggregates from its spans (`steps` count every span but containers:
    Opswald's step list). The trace's `status` is its writer's to set (an agent turn's end, a
    PATCH), so it is left alone here.

    The trace's row is locked first, in a statement of its own: REFRESH reads the spans in its
    statement's snapshot, and when it waits for another writer's lock on the row it re-checks only
    that row after, not the sums, so two writers of one trace at once would leave the totals of
    whichever wrote last, without the other's spans. After the lock, REFRESH is a new statement
    with a new snapshot (READ COMMITTED) that sees every writer committed before it. The lock is
    taken where REFRESH took it already (after the writer's spans; for an agent turn, after its
    session's row: services/turn_traces), so it adds no new lock order, only holds the same lock
    one statement earlier."""
    await db.execute(LOCK_TRACE, {"trace_pk": trace_pk})
    await db.execute(REFRESH, {"trace_pk": trace_pk, "containers": list(CONTAINER_KINDS)})


# A trace's aggregates over a set of spans `s` (REFRESH's, as a sub-select).
_AGGREGATES = f"""
    SELECT
        min(start_time) AS started,
        max(coalesce(end_time, start_time)) AS ended,
        floor(extract(epoch FROM max(coalesce(end_time, start_time)) - min(start_time)) * 1000) AS duration,
        coalesce(sum(cost) FILTER (WHERE {USAGE_COUNTED}), 0) AS cost,
        coalesce(sum(input_tokens) FILTER (WHERE {USAGE_COUNTED}), 0) AS input_tokens,
        coalesce(sum(output_tokens) FILTER (WHERE {USAGE_COUNTED}), 0) AS output_tokens,
        count(*) AS spans,
        count(*) FILTER (WHERE kind <> ALL(CAST(:containers AS text[]))) AS steps,
        count(*) FILTER (WHERE status = 'error') AS errors,
        coalesce(
            jsonb_agg(DISTINCT model ORDER BY model) FILTER (WHERE model IS NOT NULL), '[]'::jsonb
        ) AS models
"""  # noqa: S608
_SPAN_COLUMNS = (
    "span_id, parent_span_id, name, kind, status, input, output, error, metadata, start_time, "
    "end_time, model, provider, input_tokens, output_tokens, cost"
)
_SPAN_VALUES = ", ".join(f"rows.{c}" for c in _SPAN_COLUMNS.split(", "))
_SPAN_REPLACED = ", ".join(f"{c} = excluded.{c}" for c in _SPAN_COLUMNS.split(", ") if c != "span_id")
# One statement (one round trip) for a call's spans: the parent's trace (`parent_pk`, found and
# locked by PARENT_TRACE before), else a new trace in the owner's default project carrying its
# aggregates; the spans; the parent trace's aggregates over its stored spans plus these. A WITH's
# sub-statements cannot see each other's writes, which is why a new trace is inserted with its
# aggregates (computed from the rows) rather than refreshed after, and the parent's are computed
# from its stored spans (minus any the write replaces) plus the new rows.
# (S608: the f-string joins the constants above, never a value: those are bind parameters.)
CALL_TRACE = text(
    f"""
    WITH rows AS (
        SELECT * FROM jsonb_to_recordset(CAST(:spans AS jsonb)) AS r(
            id uuid, span_id text, parent_span_id text, name text, kind text, status text,
            input jsonb, output jsonb, error text, metadata jsonb, start_time timestamptz,
            end_time timestamptz, model text, provider text, input_tokens bigint,
            output_tokens bigint, cost numeric
        )
    ),
    parent AS (SELECT CAST(:parent_pk AS uuid) AS id WHERE CAST(:parent_pk AS uuid) IS NOT NULL),
    project AS (SELECT id FROM projects WHERE owner_id = CAST(:owner_id AS uuid) AND is_default),
    made AS (
        INSERT INTO traces (
            id, owner_id, project_id, trace_id, name, status, started_at, ended_at, duration_ms,
            total_cost, input_tokens, output_tokens, span_count, step_count, error_count, models_used
        )
        SELECT
            CAST(:trace_pk AS uuid), CAST(:owner_id AS uuid), project.id, CAST(:trace_id AS text),
            CAST(:name AS text), CAST(:status AS text), agg.started, agg.ended, agg.duration, agg.cost,
            agg.input_tokens, agg.output_tokens, agg.spans, agg.steps, agg.errors, agg.models
        FROM project, ({_AGGREGATES} FROM rows) AS agg
        WHERE NOT EXISTS (SELECT 1 FROM parent)
        RETURNING id
    ),
    target AS (SELECT id FROM parent UNION ALL SELECT id FROM made),
    stored AS (
        INSERT INTO spans (id, owner_id, trace_pk, {_SPAN_COLUMNS})
        SELECT rows.id, CAST(:owner_id AS uuid), target.id, {_SPAN_VALUES}
        FROM rows, target
        ON CONFLICT (trace_pk, span_id) DO UPDATE SET
            {_SPAN_REPLACED},
            updated_at = now()
        RETURNING id
    ),
    refreshed AS (
        UPDATE traces SET
            started_at = agg.started, ended_at = agg.ended, duration_ms = agg.duration,
            total_cost = agg.cost, input_tokens = agg.input_tokens, output_tokens = agg.output_tokens,
            span_count = agg.spans, step_count = agg.steps, error_count = agg.errors,
            models_used = agg.models, updated_at = now()
        FROM (
            {_AGGREGATES}
            FROM (
                SELECT start_time, end_time, cost, input_tokens, output_tokens, kind, status, model, metadata
                FROM spans
                WHERE trace_pk = (SELECT id FROM parent)
                    AND span_id NOT IN (SELECT span_id FROM rows)
                UNION ALL
                SELECT start_time, end_time, cost, input_tokens, output_tokens, kind, status, model, metadata
                FROM rows
            ) AS s
        ) AS agg
        WHERE traces.id = (SELECT id FROM parent)
        RETURNING traces.id
    )
    SELECT (SELECT id FROM target) AS trace_pk, (SELECT count(*) FROM stored) AS stored
    """  # noqa: S608
)


# A nested call's parent: the trace of the owner's span of that id (the newest, should two traces
# hold one), its row locked until the commit. CALL_TRACE computes the trace's totals from its
# statement's snapshot; a writer that waited for another's lock on the row would re-check only the
# row after, not the sums, and overwrite the totals without the other's spans. Locked first, in a
# statement of its own, CALL_TRACE starts after the other writer's commit with a snapshot that
# sees it (READ COMMITTED). The call's spans are new rows (ids no other writer has), so this lock
# before them cannot meet a writer holding one of them (the others take a trace's spans first,
# then its row); NO KEY UPDATE, as LOCK_TRACE and for its reason.
PARENT_TRACE = text(
    """
    SELECT t.id FROM spans s JOIN traces t ON t.id = s.trace_pk
    WHERE s.owner_id = :owner_id AND s.span_id = :parent_span_id
    ORDER BY s.updated_at DESC LIMIT 1
    FOR NO KEY UPDATE OF t
    """
)


async def write_call(
    db: AsyncSession,
    owner_id: uuid.UUID,
    spans: list[SpanWrite],
    *,
    name: str,
    parent_span_id: str | None = None,
    status: SpanStatus = "unset",
) -> uuid.UUID:
    """A model call's spans (the call's own first, then any children) as a trace of its own in the
    owner's default project, named `name` with `status`; or, when `parent_span_id` names one of the
    owner's spans, in that span's trace, whose status is left to its writer (another account's, or
    an unknown, parent starts a new trace: no span is attached to what the caller does not own, and
    the spans that named it as their parent are the new trace's roots). The trace's key; the caller
    commits. The one helper of the `/v2` calls (`/v2/call`, `/v2/openai`, rerank, OCR).

    In one statement (CALL_TRACE) because it is on the answer's path: the five round trips it
    replaces (parent, project, trace, spans, aggregates) cost /v2/call ~10 ms (docs/benchmarks.md).
    The default project is looked up inside it; only an account's very first trace makes one. A
    nested call takes one more, before it: its parent's trace, locked (PARENT_TRACE)."""
    parent_pk: uuid.UUID | None = None
    if parent_span_id is not None:
        parent_pk = await db.scalar(PARENT_TRACE, {"owner_id": owner_id, "parent_span_id": parent_span_id})
    # A call's spans reference no stored event or message (`source_*`: an agent turn's).
    rows = []
    for s in spans:
        row = {k: v for k, v in msgspec.structs.asdict(s).items() if not k.startswith("source_")}
        if parent_pk is None and parent_span_id is not None and row["parent_span_id"] == parent_span_id:
            row["parent_span_id"] = None  # a parent the new trace does not hold: a root (docs/v2.md)
        rows.append({"id": str(uuid7()), **row})
    params = {
        "spans": msgspec.json.encode(rows).decode(),
        "owner_id": owner_id,
        "parent_pk": parent_pk,
        "trace_pk": uuid7(),
        "trace_id": str(uuid.uuid4()),
        "name": name,
        "status": status,
        "containers": list(CONTAINER_KINDS),
    }
    for _ in range(2):
        trace_pk: uuid.UUID | None = (await db.execute(CALL_TRACE, params)).scalar()
        if trace_pk is not None:
            return trace_pk
        # No parent and no default project yet: the account's first trace makes the project.
        await default_project(db, owner_id)
    raise AssertionError("the owner's default project exists")  # made just above


async def finish_call(db: AsyncSession, owner_id: uuid.UUID, span: SpanWrite, **fields: Any) -> None:
    """A one-span call (`/v2/rerank`, `/v2/ocr`) ended now with `fields` (status, output, error,
    tokens, cost), written as a trace of its own named after the span and committed: a failure's
    span too, before the 502 that follows could roll it back."""
    done = msgspec.structs.replace(span, end_time=datetime.now(UTC), **fields)
    await write_call(db, owner_id, [done], name=done.name, status=done.status)
    await db.commit()


def as_write(span: Span) -> SpanWrite:
    """A stored span as the write that would store it again (content references kept, not read):
    the start of an update of some of its fields, or of a copy into another trace."""
    status: SpanStatus = "ok" if span.status == "ok" else "error" if span.status == "error" else "unset"
    return SpanWrite(
        span_id=span.span_id,
        name=span.name,
        parent_span_id=span.parent_span_id,
        kind=span.kind,
        status=status,
        input=span.input,
        output=span.output,
        error=span.error,
        metadata=dict(span.metadata_ or {}),
        start_time=span.start_time,
        end_time=span.end_time,
        model=span.model,
        provider=span.provider,
        input_tokens=span.input_tokens,
        output_tokens=span.output_tokens,
        cost=span.cost,
        source_event_id=span.source_event_id,
        source_message_id=span.source_message_id,
    )


async def span_contents(db: AsyncSession, spans: list[Span]) -> dict[uuid.UUID, tuple[Any, Any]]:
    """Each span's (input, output), by the span's row key: a span's own when it holds them, else
    read from the stored event or message an agent turn's span references (docs/traces.md, "Agent
    turns as traces"). Two statements however many spans: every API answers with the content."""
    event_ids: set[uuid.UUID] = set()
    message_ids: set[uuid.UUID] = set()
    for span in spans:
        if span.source_event_id is not None:
            event_ids.add(span.source_event_id)
        if span.source_message_id is not None:
            message_ids.add(span.source_message_id)
        if (input_event_id := _input_event_id(span)) is not None:
            event_ids.add(input_event_id)
    # Each with its owner (its session's agent's): a span's reference is followed only to its own
    # owner's records. An ingested span's metadata is the client's, so an `input_event_id` there
    # could name another account's event.
    found_events: dict[uuid.UUID, tuple[Event, uuid.UUID]] = {}
    found_messages: dict[uuid.UUID, tuple[Message, uuid.UUID]] = {}
    if event_ids:
        rows = await db.execute(
            select(Event, Agent.owner_id)
            .join(Session, Session.id == Event.session_id)
            .join(Agent, Agent.id == Session.agent_id)
            .where(Event.id.in_(event_ids))
        )
        found_events = {event.id: (event, owner) for event, owner in rows}
    if message_ids:
        message_rows = await db.execute(
            select(Message, Agent.owner_id)
            .join(Session, Session.id == Message.session_id)
            .join(Agent, Agent.id == Session.agent_id)
            .where(Message.id.in_(message_ids))
        )
        found_messages = {message.id: (message, owner) for message, owner in message_rows}

    out: dict[uuid.UUID, tuple[Any, Any]] = {}
    for span in spans:
        source = _owned(found_events, span.source_event_id, span)
        message = _owned(found_messages, span.source_message_id, span)
        started_event = _owned(found_events, _input_event_id(span), span)
        out[span.id] = _content(span, source, message, started_event)
    return out


def _owned(found: dict[uuid.UUID, tuple[_T, uuid.UUID]], key: uuid.UUID | None, span: Span) -> _T | None:
    hit = found.get(key) if key is not None else None
    return hit[0] if hit is not None and hit[1] == span.owner_id else None


async def span_content(db: AsyncSession, span: Span) -> tuple[Any, Any]:
    """One span's (input, output): `span_contents` for one."""
    return (await span_contents(db, [span]))[span.id]


def _input_event_id(span: Span) -> uuid.UUID | None:
    value = (span.metadata_ or {}).get("input_event_id")
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _content(
    span: Span, source: Event | None, message: Message | None, started: Event | None
) -> tuple[Any, Any]:
    """What a referenced event or message says, as the span's input and output; a span's own
    input/output win (a writer that copied them, an outside app's span)."""
    given_input, given_output = span.input, span.output
    found_input: Any = None
    found_output: Any = None
    if span.kind == "llm":
        if source is not None:  # llm.generation: the prompt, the history's messages, the tools, the reply
            data = source.data
            found_input = {k: data.get(k) for k in ("system_prompt", "messages", "tools")}
            found_output = data.get("output")
        elif message is not None:
            found_output = {"content": message.content}
    elif span.kind == "tool":
        if started is not None:  # tool.call_started: the call with its arguments
            call = started.data.get("tool_call", {})
            found_input = {"name": call.get("name"), "arguments": call.get("arguments")}
        if source is not None:  # tool.call_completed: the result or the error
            data = source.data
            found_output = {
                "status": data.get("status"),
                "result": data.get("result"),
                "error": data.get("error"),
            }
    else:  # the turn's root: the user's message; its end event
        if message is not None:
            found_input = {"content": message.content}
        if source is not None:
            found_output = {"type": source.type, **source.data}
    return (
        given_input if given_input is not None else found_input,
        given_output if given_output is not None else found_output,
    )
