"""OTLP out: a finished turn's spans, read back from the trace store, exported through the
OpenTelemetry SDK with the GenAI semantic conventions (`OTEL_EXPORTER_OTLP_ENDPOINT`), so the turns
show up in Jaeger, Langfuse, Phoenix or any OTLP backend.

The export never holds up nor fails a turn: the worker hands the turn over once its end is stored
(`TurnExporter.export_turn_later`), a background task reads its spans, and the SDK's batch processor
sends them from its own thread, dropping (and logging) what a backend that is away does not take.

Ids: a turn's trace id is its turn id (a UUID: its 16 bytes are the OTel trace id); a span id that is
not 16 hex characters (the loop's `{turn}:llm:{n}`) becomes the first 8 bytes of its SHA-256, so a
span keeps its OTel id however often it is exported, and its parent is found by the same rule. The
store's own ids travel as `everloop.trace_id` / `everloop.span_id`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import structlog
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as OtelEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import core
from core.db import Database
from core.db.models import Event, Message
from core.db.traces import Span, Trace
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
    out: list[ReadableSpan] = []
    for trace in traces:
        spans = (
            await db.scalars(
                select(Span).where(Span.trace_pk == trace.id).order_by(Span.start_time, Span.span_id)
            )
        ).all()
        sources = await _Sources.load(db, spans)
        out += [readable_span(s, trace, sources, resource) for s in spans]
    return out


class TurnExporter:
    """The worker's OTLP export. `export_turn_later` returns at once; `shutdown` sends what is queued."""

    def __init__(
        self, exporter: SpanExporter, service_name: str = "everloop", *, delay_ms: int = 1000
    ) -> None:
        self.resource = Resource.create({"service.name": service_name, "service.version": core.__version__})
        # Its own thread, a bounded queue (what overflows is dropped and logged), retries with backoff
        # inside the exporter: a slow or absent backend costs the worker nothing else.
        self.processor = BatchSpanProcessor(exporter, schedule_delay_millis=delay_ms)
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> TurnExporter | None:
        endpoint = settings.otel_exporter_otlp_endpoint
        if not endpoint:
            return None
        exporter = OTLPSpanExporter(
            endpoint=f"{endpoint.rstrip('/')}/v1/traces", headers=dict(settings.otel_exporter_otlp_headers)
        )
        return cls(exporter, settings.otel_service_name)

    def export_turn_later(self, db: Database, turn_id: str) -> None:
        task = asyncio.create_task(self._export(db, turn_id))
        self._tasks.add(task)  # held, or the loop may collect it before it runs
        task.add_done_callback(self._tasks.discard)

    async def _export(self, db: Database, turn_id: str) -> None:
        try:
            async with db.session() as session:
                spans = await turn_spans(session, turn_id, self.resource)
            self.submit(spans)
        except Exception as exc:  # an export is a copy: never worth more than a log line
            log.warning("turn export failed", turn_id=turn_id, error=f"{type(exc).__name__}: {exc}")

    def submit(self, spans: Iterable[ReadableSpan]) -> None:
        for span in spans:
            self.processor.on_end(span)

    async def drain(self) -> None:
        """Waits for the turns handed over so far to be read and queued."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def flush(self, timeout_ms: int = 10_000) -> bool:
        await self.drain()
        return await asyncio.to_thread(self.processor.force_flush, timeout_ms)

    async def shutdown(self) -> None:
        await self.drain()
        await asyncio.to_thread(self.processor.shutdown)
