"""OTLP out: a finished turn's spans, read back from the trace store, exported through the
OpenTelemetry SDK with the GenAI semantic conventions (`OTEL_EXPORTER_OTLP_ENDPOINT`), so the turns
show up in Jaeger, Langfuse, Phoenix or any OTLP backend.

At least once, and never holding up nor failing a turn: the worker hands the turn over once its end
is stored (`TurnExporter.export_turn_later`, also when a retried end stored nothing new), a
background task sends it through the SDK's exporter and, on the backend's success, sets the trace's
`exported_at`. What was not sent (the worker died first, the backend was away, export was off while
the turn ended) the sweeper sends later (`TurnExporter.export_due`, everloop/sweeper.py): the
agent turns that ended `OTLP_EXPORT_RETRY_AFTER` seconds ago or more without `exported_at`, with
backoff while the backend keeps failing.

Ids: a turn's trace id is its turn id (a UUID: its 16 bytes are the OTel trace id); a span id that is
not 16 hex characters (the loop's `{turn}:llm:{n}`) becomes the first 8 bytes of its SHA-256, so a
span keeps its OTel id however often it is exported (a backend keyed on span ids takes a re-export as
the same spans), and its parent is found by the same rule. The store's own ids travel as
`everloop.trace_id` / `everloop.span_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as OtelEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

import core
from core.db import Database
from core.db.models import Event, Message
from core.db.traces import EXPORT_DUE, Span, Trace
from core.settings import Settings

log = structlog.get_logger("everloop.otlp_export")

SCOPE = InstrumentationScope("everloop", core.__version__)
SAMPLED = TraceFlags(TraceFlags.SAMPLED)  # a processor drops unsampled spans
# Each kind's GenAI operation and OTel span kind (an LLM call is a client call to a provider).
OPERATIONS: dict[str, tuple[str, SpanKind]] = {
    "llm": ("chat", SpanKind.CLIENT),
    "tool": ("execute_tool", SpanKind.INTERNAL),
    "agent": ("invoke_agent", SpanKind.INTERNAL),
    "embedding": ("embeddings", SpanKind.CLIENT),
}


def trace_id_of(given: str) -> int:
    return _id_of(given, 16)


def span_id_of(given: str) -> int:
    return _id_of(given, 8)


def _id_of(given: str, size: int) -> int:
    """The OTel id of a stored id: the id itself when it is one (hex of the right size, or a UUID
    for a trace), else the first bytes of its SHA-256. Never zero (an invalid id in OTel)."""
    text = given.strip().lower()
    if len(text) == size * 2:
        try:
            value = int(text, 16)
            if value:
                return value
        except ValueError:
            pass
    if size == 16:
        try:
            value = uuid.UUID(text).int
            if value:
                return value
        except ValueError:
            pass
    return int.from_bytes(hashlib.sha256(given.encode()).digest()[:size], "big") or 1


def _nanos(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    # Integer arithmetic: a float of nanoseconds since 1970 loses the microseconds.
    delta = moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _parts(content: Any) -> list[dict[str, Any]]:
    """A stored message's content parts in the GenAI conventions' message-part form."""
    out: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else [content]:
        if not isinstance(part, dict):
            out.append({"type": "text", "content": str(part)})
        elif part.get("type") == "text":
            out.append({"type": "text", "content": part.get("text", "")})
        elif part.get("type") == "tool_call":
            out.append(
                {
                    "type": "tool_call",
                    "id": part.get("id"),
                    "name": part.get("name"),
                    "arguments": part.get("arguments"),
                }
            )
        elif part.get("type") == "tool_result":
            result = part.get("result", part.get("content"))
            out.append({"type": "tool_call_response", "id": part.get("tool_call_id"), "response": result})
        else:
            out.append(part)
    return out


def _message(role: str, content: Any) -> dict[str, Any]:
    return {"role": "assistant" if role == "agent" else role, "parts": _parts(content)}


class _Sources:
    """The stored events and messages the turn's spans point at (their content is not copied into
    the spans), fetched in two queries."""

    def __init__(self, events: dict[uuid.UUID, Event], messages: dict[uuid.UUID, Message]) -> None:
        self.events, self.messages = events, messages

    @classmethod
    async def load(cls, db: AsyncSession, spans: Sequence[Span]) -> _Sources:
        event_ids = {s.source_event_id for s in spans if s.source_event_id}
        for s in spans:
            if isinstance((s.metadata_ or {}).get("input_event_id"), str):
                event_ids.add(uuid.UUID(s.metadata_["input_event_id"]))
        events = {e.id: e for e in (await db.scalars(select(Event).where(Event.id.in_(event_ids)))).all()}
        message_ids = {s.source_message_id for s in spans if s.source_message_id}
        for event in events.values():
            if event.type == "llm.generation":
                for ref in (event.data or {}).get("messages", []):
                    message_ids.add(uuid.UUID(ref["message_id"]))
        messages = (
            {m.id: m for m in (await db.scalars(select(Message).where(Message.id.in_(message_ids)))).all()}
            if message_ids
            else {}
        )
        return cls(events, messages)

    def message(self, message_id: Any) -> dict[str, Any] | None:
        try:
            found = self.messages.get(uuid.UUID(str(message_id)))
        except ValueError:
            return None
        return _message(found.role, found.content) if found is not None else None


def genai_attributes(span: Span, trace: Trace, sources: _Sources) -> dict[str, Any]:
    """The span's attributes by the GenAI semantic conventions, its content resolved from the stored
    event or message it references when the span does not copy it."""
    attrs: dict[str, Any] = {
        "everloop.trace_id": trace.trace_id,
        "everloop.span_id": span.span_id,
        "everloop.kind": span.kind,
    }
    operation = OPERATIONS.get(span.kind)
    if operation is not None:
        attrs["gen_ai.operation.name"] = operation[0]
    if trace.session_id:
        attrs["gen_ai.conversation.id"] = trace.session_id
    if span.model:
        attrs["gen_ai.request.model"] = span.model
        attrs["gen_ai.response.model"] = span.model
    if span.provider:
        attrs["gen_ai.provider.name"] = span.provider
    if span.input_tokens is not None:
        attrs["gen_ai.usage.input_tokens"] = span.input_tokens
    if span.output_tokens is not None:
        attrs["gen_ai.usage.output_tokens"] = span.output_tokens
    if span.cost is not None:
        attrs["gen_ai.usage.cost"] = float(span.cost)  # not in the conventions; OTLP in reads it back
    if span.error:
        attrs["error.type"] = span.error[:255]
    meta = span.metadata_ or {}
    source = sources.events.get(span.source_event_id) if span.source_event_id else None
    data: dict[str, Any] = (source.data or {}) if source is not None else {}
    given, made = span.input, span.output

    if span.kind == "agent":
        attrs["gen_ai.agent.name"] = span.name
        if trace.agent_id:
            attrs["gen_ai.agent.id"] = str(trace.agent_id)
        opening = sources.message(span.source_message_id) if span.source_message_id else None
        if given is None and opening is not None:
            given = [opening]
        _content(attrs, "gen_ai.input.messages", given)
        _content(attrs, "gen_ai.output.messages", made)
    elif span.kind == "llm":
        if source is not None and source.type == "llm.generation":
            if data.get("system_prompt"):
                attrs["gen_ai.system_instructions"] = _json(
                    [{"type": "text", "content": data["system_prompt"]}]
                )
            history = [sources.message(ref.get("message_id")) for ref in data.get("messages", [])]
            given = given if given is not None else [m for m in history if m is not None]
            output = data.get("output") or {}
            calls = [{"type": "tool_call", **c} for c in output.get("tool_calls", [])]
            reply = [{"type": "text", "text": output.get("text")}] if output.get("text") else []
            if made is None:
                made = [
                    {
                        **_message("assistant", reply + calls),
                        "finish_reason": "tool_call" if calls else "stop",
                    }
                ]
            tools = [t.get("name") for t in data.get("tools", []) if isinstance(t, dict)]
            if tools:
                attrs["everloop.tools"] = tools
        _content(attrs, "gen_ai.input.messages", given)
        _content(attrs, "gen_ai.output.messages", made)
    elif span.kind == "tool":
        attrs["gen_ai.tool.name"] = span.name
        call_id = meta.get("tool_call_id") or data.get("tool_call_id")
        if call_id:
            attrs["gen_ai.tool.call.id"] = str(call_id)
        started = (
            sources.events.get(uuid.UUID(meta["input_event_id"])) if meta.get("input_event_id") else None
        )
        if given is None and started is not None:
            given = (started.data or {}).get("tool_call", {}).get("arguments")
        if made is None and source is not None and source.type == "tool.call_completed":
            result = data.get("result")
            made = "".join(p.get("text", "") for p in result) if isinstance(result, list) else result
        _content(attrs, "gen_ai.tool.call.arguments", given)
        _content(attrs, "gen_ai.tool.call.result", made)
    else:
        _content(attrs, "everloop.input", given)
        _content(attrs, "everloop.output", made)
    # The span's own metadata, where it does not clash with the conventions' keys above.
    for key, value in meta.items():
        attrs.setdefault(
            f"everloop.metadata.{key}", value if isinstance(value, str | int | float | bool) else _json(value)
        )
    return attrs


def _content(attrs: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        attrs[key] = _json(value)


def readable_span(span: Span, trace: Trace, sources: _Sources, resource: Resource) -> ReadableSpan:
    trace_id = trace_id_of(trace.trace_id)
    context = SpanContext(trace_id, span_id_of(span.span_id), is_remote=False, trace_flags=SAMPLED)
    parent = (
        SpanContext(trace_id, span_id_of(span.parent_span_id), is_remote=False, trace_flags=SAMPLED)
        if span.parent_span_id
        else None
    )
    operation = OPERATIONS.get(span.kind)
    name = span.name
    if span.kind == "llm":
        name = f"chat {span.model}" if span.model else "chat"
    elif operation is not None:
        name = f"{operation[0]} {span.name}"
    status = Status(StatusCode.UNSET)
    if span.status == "ok":
        status = Status(StatusCode.OK)
    elif span.status == "error":
        status = Status(StatusCode.ERROR, span.error or "error")
    start = _nanos(span.start_time) or _nanos(span.end_time)
    end = _nanos(span.end_time) or start
    events = (
        [OtelEvent("exception", {"exception.message": span.error}, timestamp=end)]
        if span.status == "error" and span.error
        else []
    )
    return ReadableSpan(
        name=name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=genai_attributes(span, trace, sources),
        events=events,
        kind=operation[1] if operation else SpanKind.INTERNAL,
        status=status,
        start_time=start,
        end_time=end,
        instrumentation_scope=SCOPE,
    )


async def turn_spans(db: AsyncSession, turn_id: str, resource: Resource) -> list[ReadableSpan]:
    """The turn's spans as the SDK's spans, ready for any exporter (root first)."""
    traces = (await db.scalars(select(Trace).where(Trace.trace_id == turn_id))).all()
    return _readable(await _load(db, traces), resource)


Loaded = list[tuple[Trace, Sequence[Span], _Sources]]


async def _load(db: AsyncSession, traces: Sequence[Trace]) -> Loaded:
    out: Loaded = []
    for trace in traces:
        spans = (
            await db.scalars(
                select(Span).where(Span.trace_pk == trace.id).order_by(Span.start_time, Span.span_id)
            )
        ).all()
        out.append((trace, spans, await _Sources.load(db, spans)))
    return out


def _readable(loaded: Loaded, resource: Resource) -> list[ReadableSpan]:
    return [readable_span(s, trace, sources, resource) for trace, spans, sources in loaded for s in spans]


# One request holds at most this many spans and, roughly, this many bytes of attributes: a turn of a
# long conversation (each LLM span carries the history it was given) goes in several requests, each
# within what collectors take (4 MiB is the OTel Collector's gRPC default; the SDK refuses 64 MiB).
REQUEST_SPANS = 512
REQUEST_BYTES = 4 * 1024 * 1024
# After a failed send, fresh turns are not sent and the sweep waits: 10 s, doubling up to 5 min.
BACKOFF_FIRST_S = 10.0
BACKOFF_MAX_S = 300.0
# The sweep's batch (turns per query), and how far back it looks: a turn that ended longer ago is
# left unexported (the horizon of stranded turns too: services/stranded.py).
SWEEP_BATCH = 50
HORIZON = timedelta(days=7)
# Fresh turns waiting for their export beyond this many are left to the sweep (a bound on tasks).
PENDING_MAX = 1000
# pg_try_advisory_lock(bigint): one worker's sweep at a time, so N workers do not send each owed
# turn N times. (The two-int4 keys of core/file_store.py are another key space.)
SWEEP_LOCK = 0x4F544C5045585054  # "OTLPEXPT"

_DUE = text(
    f"""
    SELECT id FROM traces
    WHERE {EXPORT_DUE}
      AND ended_at < now() - make_interval(secs => :after)
      AND ended_at > now() - make_interval(secs => :horizon)
      AND id <> ALL(:held)
    ORDER BY ended_at
    LIMIT :batch
    """  # noqa: S608 - EXPORT_DUE is a constant
)

Outcome = Literal["sent", "failed", "broken", "none", "skipped"]


def _broken(traces: Sequence[Trace], exc: Exception) -> Outcome:
    log.error(
        "cannot map a turn's spans for export",
        trace_ids=[t.trace_id for t in traces],
        error=f"{type(exc).__name__}: {exc}",
    )
    return "broken"


def _requests(spans: list[ReadableSpan]) -> Iterator[list[ReadableSpan]]:
    """The spans in requests of at most REQUEST_SPANS spans and about REQUEST_BYTES (a bigger span
    goes alone)."""
    batch: list[ReadableSpan] = []
    size = 0
    for span in spans:
        weight = 256 + sum(len(v) if isinstance(v, str) else 16 for v in (span.attributes or {}).values())
        if batch and (len(batch) == REQUEST_SPANS or size + weight > REQUEST_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(span)
        size += weight
    if batch:
        yield batch


class TurnExporter:
    """The worker's OTLP export, at least once. `export_turn_later` sends a finished turn at once, in
    the background; `export_due` (the sweeper's) sends the finished turns still without
    `exported_at` (their worker died, the send failed, export was off). A send goes through the SDK's
    exporter directly, in a thread (it blocks), one at a time per worker; only a success marks the
    turn `exported_at`. Ids are stable, so a turn sent twice is the same spans twice."""

    def __init__(
        self, exporter: SpanExporter, service_name: str = "everloop", *, retry_after_s: float = 60.0
    ) -> None:
        self.exporter = exporter
        self.resource = Resource.create({"service.name": service_name, "service.version": core.__version__})
        self.retry_after_s = retry_after_s
        self.failures = 0  # failed sends in a row
        self._paused_until = 0.0  # time.monotonic()
        # One send at a time: the exporter's HTTP session is not shared between threads, and a
        # backend that is away holds one thread, not one per finished turn.
        self._slot = asyncio.Semaphore(1)
        self._tasks: set[asyncio.Task[Outcome]] = set()
        # The sweep's turns that failed, by trace key: (failures, not before) — a turn that cannot
        # be sent (too big, unreadable) waits its own backoff instead of stopping every run.
        self._held: dict[uuid.UUID, tuple[int, float]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> TurnExporter | None:
        endpoint = settings.otel_exporter_otlp_endpoint
        if not endpoint:
            return None
        exporter = OTLPSpanExporter(
            endpoint=f"{endpoint.rstrip('/')}/v1/traces", headers=dict(settings.otel_exporter_otlp_headers)
        )
        return cls(exporter, settings.otel_service_name, retry_after_s=settings.otlp_export_retry_after_s)

    def paused(self) -> bool:
        """After a failed send, for the backoff's time: fresh turns are left to the sweep, which waits."""
        return time.monotonic() < self._paused_until

    def export_turn_later(self, db: Database, turn_id: str, session_id: str | None = None) -> None:
        """Sends the turn's spans in the background unless it was sent already (a retried end), the
        backend is failing (paused) or too many turns wait: the sweep sends those later."""
        if self.paused() or len(self._tasks) >= PENDING_MAX:
            return
        where = [Trace.trace_id == turn_id]
        if session_id is not None:
            where.append(Trace.session_id == session_id)  # ix_traces_session_id
        task = asyncio.create_task(self._export_quietly(db, where, turn_id))
        self._tasks.add(task)  # held, or the loop may collect it before it runs
        task.add_done_callback(self._tasks.discard)

    async def _export_quietly(self, db: Database, where: list[ColumnElement[bool]], turn_id: str) -> Outcome:
        try:
            return await self._export(db, where, live=True)
        except Exception as exc:  # the sweep sends it later; never worth more than a log line here
            log.warning("turn export failed", turn_id=turn_id, error=f"{type(exc).__name__}: {exc}")
            return "failed"

    async def export_due(
        self, db: Database, *, horizon: timedelta = HORIZON, batch: int = SWEEP_BATCH
    ) -> int:
        """One run of the retry sweep: every agent turn that ended between `horizon` and
        `retry_after_s` ago without `exported_at`, oldest first, a batch per query, until none is
        left or a send fails (the backend is away: the run stops). Returns how many it sent.
        Raises what the database raises."""
        sent = 0
        while True:
            now = time.monotonic()
            held = [pk for pk, (_, until) in self._held.items() if until > now]
            async with db.session() as session:
                params = {
                    "after": self.retry_after_s,
                    "horizon": horizon.total_seconds(),
                    "held": held,
                    "batch": batch,
                }
                due = list((await session.scalars(_DUE, params)).all())
            for pk in due:
                outcome = await self._export(db, [Trace.id == pk])
                if outcome in ("failed", "broken"):
                    failed = self._held.get(pk, (0, 0.0))[0] + 1
                    self._held[pk] = (failed, time.monotonic() + _backoff(failed))
                    if outcome == "failed":
                        return sent
                    continue
                self._held.pop(pk, None)
                sent += outcome == "sent"
            if len(self._held) > 10 * PENDING_MAX:  # deleted traces never come back: forget the oldest
                self._held = dict(sorted(self._held.items(), key=lambda i: i[1][1])[-PENDING_MAX:])
            if len(due) < batch:
                if sent:
                    log.info("exported owed turns", count=sent)
                return sent

    async def _export(
        self, db: Database, where: Sequence[ColumnElement[bool]], *, live: bool = False
    ) -> Outcome:
        """Sends the traces matching `where` that are owed (EXPORT_DUE), and marks them. A `live`
        one (a fresh turn) is skipped when a send failed while it waited: it is the sweep's."""
        async with self._slot:
            if live and self.paused():
                return "skipped"
            # Read under the slot: a turn sent meanwhile (the live path, an earlier attempt) is
            # not owed any more, and waiting turns hold no spans in memory.
            async with db.session() as session:
                traces = (await session.scalars(select(Trace).where(text(EXPORT_DUE), *where))).all()
                if not traces:
                    return "none"
                try:
                    loaded = await _load(session, traces)
                except (ValueError, KeyError, TypeError) as exc:
                    # A reference the loader cannot read (not an outage, which propagates): held
                    # back like a send that failed, so the turns behind it go on.
                    return _broken(traces, exc)
            try:
                spans = _readable(loaded, self.resource)
            except Exception as exc:  # stored data the mapping cannot read: a bug, not an outage
                return _broken(traces, exc)
            for request in _requests(spans):
                result = await asyncio.to_thread(self.exporter.export, request)
                if result is not SpanExportResult.SUCCESS:
                    self.failures += 1
                    self._paused_until = time.monotonic() + _backoff(self.failures)
                    log.warning(
                        "OTLP backend did not take a turn's spans",
                        trace_ids=[t.trace_id for t in traces],
                        failures=self.failures,
                    )
                    return "failed"
            self.failures, self._paused_until = 0, 0.0
            async with db.session() as session:
                keys = [t.id for t in traces]
                await session.execute(update(Trace).where(Trace.id.in_(keys)).values(exported_at=func.now()))
                await session.commit()
            return "sent"

    async def drain(self) -> None:
        """Waits for the turns handed over so far to be sent (or to fail)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """Gives the turns handed over `timeout_s` to be sent, then stops the exporter (what was not
        sent is the sweep's: no `exported_at`)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await asyncio.to_thread(self.exporter.shutdown)


def _backoff(failures: int) -> float:
    return float(min(BACKOFF_FIRST_S * 2 ** min(failures - 1, 16), BACKOFF_MAX_S))


@contextlib.asynccontextmanager
async def sole_sweeper(db: Database) -> AsyncIterator[bool]:
    """Whether this worker is the one to run the export sweep now (a session-level advisory lock,
    held on a connection of its own for the run and released with it; a worker that dies releases
    it with its connection)."""
    async with db.engine.connect() as conn:
        held = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": SWEEP_LOCK}))
        await conn.commit()  # not idle in a transaction while the sweep runs
        try:
            yield held
        finally:
            if held:
                try:
                    await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SWEEP_LOCK})
                    await conn.commit()
                except Exception:
                    await conn.invalidate()  # closing the connection releases the lock
