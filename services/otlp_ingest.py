"""OTLP in: OpenTelemetry traces (`POST /v1/otlp/v1/traces`, the standard OTLP/HTTP encodings) become
spans of the trace store, through its one write path (`services.traces.upsert_spans`).

The GenAI semantic conventions (`gen_ai.*`) are mapped onto the store's own fields, so any GenAI
instrumentation's spans read like the loop's: the operation names the kind, the model, provider and
token counts fill the LLM columns, and prompts / completions / tool arguments and results become the
span's input and output, whichever generation of the conventions sent them (the flattened
`gen_ai.prompt.N.*` attributes, the `gen_ai.input.messages` JSON, or span events). Every attribute
is kept in the span's metadata as well, so nothing an instrumentation sent is lost.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.traces import Trace
from core.errors import InvalidInput, TooLarge, UnsupportedMediaType
from core.json_limits import JsonLimits, check_json
from core.schemas.traces import SpanStatus, SpanWrite
from services.traces import default_project, ensure_trace, upsert_spans

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# `gen_ai.operation.name` → the store's kind. Anything else (or no operation) is `custom`.
OPERATION_KINDS = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
    "embeddings": "embedding",
}
# OpenInference (Phoenix, Arize) names its kind in its own attribute; honoured when no GenAI
# operation is given.
OPENINFERENCE_KINDS = {
    "LLM": "llm",
    "TOOL": "tool",
    "AGENT": "agent",
    "CHAIN": "chain",
    "RETRIEVER": "retrieval",
    "EMBEDDING": "embedding",
}
_STATUS: dict[int, SpanStatus] = {
    Status.STATUS_CODE_UNSET: "unset",
    Status.STATUS_CODE_OK: "ok",
    Status.STATUS_CODE_ERROR: "error",
}
# Postgres takes at most 65,535 bind parameters a statement; a span has ~20 columns.
UPSERT_CHUNK = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- decoding -----------------------------------------------------------------------------------


def decode(
    body: bytes, content_type: str, content_encoding: str, max_bytes: int, limits: JsonLimits
) -> ExportTraceServiceRequest:
    """The request, from either OTLP/HTTP encoding. 415 for another media type, 400 for a body that
    does not decode (naming why), 413 for a compressed body that inflates past `max_bytes`."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in (PROTOBUF, JSON):
        raise UnsupportedMediaType(
            f"Content-Type must be {PROTOBUF} or {JSON} (OTLP/HTTP), not {media_type or 'none'}"
        )
    body = _inflate(body, content_encoding.strip().lower(), max_bytes)
    request = ExportTraceServiceRequest()
    if media_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise InvalidInput(
                f"the body is not an OTLP ExportTraceServiceRequest (protobuf): {exc}"
            ) from exc
        return request
    check_json(body, limits)  # the nesting and size limits every JSON body meets
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidInput("the body must be a JSON object (an OTLP ExportTraceServiceRequest)")
    try:
        _hex_ids_to_base64(document)
        # OTLP/JSON: unknown fields are ignored, so a newer sender's fields do not break older receivers.
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"the body is not an OTLP ExportTraceServiceRequest (JSON): {exc}") from exc
    return request


def _inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding must be gzip, deflate or none, not {encoding}")
    # Bounded, so a small bomb cannot inflate into gigabytes.
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidInput(f"the body is not valid {encoding}: {exc}") from exc
    if len(out) > max_bytes:
        raise TooLarge(f"the decompressed body is over {max_bytes} bytes (MAX_REQUEST_BODY_BYTES)")
    return out


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids as hex, where protobuf's JSON mapping reads bytes as
    base64: turn them into what `json_format` expects, in place."""

    def convert(holder: Any, *keys: str) -> None:
        if not isinstance(holder, dict):
            return
        for key in keys:
            for name in (key, _snake(key)):
                value = holder.get(name)
                if isinstance(value, str) and value:
                    try:
                        holder[name] = base64.b64encode(bytes.fromhex(value)).decode()
                    except ValueError as exc:
                        raise InvalidInput(f"{name} must be hex: {value[:80]!r}") from exc

    for resource_spans in _list(document, "resourceSpans"):
        for scope_spans in _list(resource_spans, "scopeSpans"):
            for span in _list(scope_spans, "spans"):
                convert(span, "traceId", "spanId", "parentSpanId")
                for link in _list(span, "links"):
                    convert(link, "traceId", "spanId")


def _list(holder: Any, key: str) -> list[Any]:
    if not isinstance(holder, dict):
        return []
    value = holder.get(key, holder.get(_snake(key)))
    return value if isinstance(value, list) else []


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def encode_response(response: ExportTraceServiceResponse, content_type: str) -> tuple[bytes, str]:
    """The answer in the encoding of the request, as OTLP/HTTP asks."""
    if content_type.split(";", 1)[0].strip().lower() == JSON:
        return json_format.MessageToJson(response, indent=None).encode(), JSON
    return response.SerializeToString(), PROTOBUF


# --- mapping ------------------------------------------------------------------------------------


def any_value(value: AnyValue) -> Any:
    """An OTLP attribute value as plain JSON."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


def _time(nanos: int) -> datetime | None:
    # 0 means "not set" in OTLP; integer arithmetic keeps the microseconds exact.
    return _EPOCH + timedelta(microseconds=nanos // 1000) if nanos else None


def _json_or_text(value: Any) -> Any:
    """The newer conventions send structured values as JSON strings (`gen_ai.input.messages`)."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("[", "{"):
            try:
                return json.loads(stripped)
            except ValueError:
                return value
    return value


def _unflatten(attrs: Mapping[str, Any], prefix: str) -> list[Any] | None:
    """`gen_ai.prompt.0.role`, `gen_ai.prompt.0.content`, `gen_ai.prompt.1.tool_calls.0.name` …
    (OpenLLMetry's flattened messages) → `[{role, content}, {tool_calls: [{name}]}]`."""
    tree: dict[str, Any] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix + "."):
            continue
        node = tree
        parts = key[len(prefix) + 1 :].split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = _json_or_text(value) if parts[-1] == "arguments" else value
    return _as_lists(tree) if tree else None


def _as_lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _as_lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _messages_from_events(events: Iterable[tuple[str, dict[str, Any]]]) -> tuple[list[Any], list[Any]]:
    """Prompts and completions sent as span events, by the conventions' earlier generations:
    `gen_ai.{system,user,assistant,tool}.message` and `gen_ai.choice`, or one
    `gen_ai.content.prompt` / `gen_ai.content.completion` event carrying the whole text."""
    inputs: list[Any] = []
    outputs: list[Any] = []
    for name, attrs in events:
        if name in (
            "gen_ai.system.message",
            "gen_ai.user.message",
            "gen_ai.assistant.message",
            "gen_ai.tool.message",
        ):
            message = {k: _json_or_text(v) for k, v in attrs.items() if not k.startswith("gen_ai.system")}
            message.setdefault("role", name.split(".")[1])
            inputs.append(message)
        elif name == "gen_ai.choice":
            outputs.append(
                {k: _json_or_text(v) for k, v in attrs.items() if not k.startswith("gen_ai.system")}
            )
        elif name == "gen_ai.content.prompt" and "gen_ai.prompt" in attrs:
            inputs.append(_json_or_text(attrs["gen_ai.prompt"]))
        elif name == "gen_ai.content.completion" and "gen_ai.completion" in attrs:
            outputs.append(_json_or_text(attrs["gen_ai.completion"]))
        elif name == "gen_ai.client.inference.operation.details":
            if "gen_ai.input.messages" in attrs:
                inputs.extend(_as_list(_json_or_text(attrs["gen_ai.input.messages"])))
            if "gen_ai.output.messages" in attrs:
                outputs.extend(_as_list(_json_or_text(attrs["gen_ai.output.messages"])))
    return inputs, outputs


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _first(attrs: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if attrs.get(key) not in (None, ""):
            return attrs[key]
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None and not isinstance(value, bool) else None
    except InvalidOperation:
        return None


def kind_of(attrs: Mapping[str, Any]) -> str:
    operation = attrs.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation:
        return OPERATION_KINDS.get(operation, "custom")
    openinference = attrs.get("openinference.span.kind")
    if isinstance(openinference, str):
        return OPENINFERENCE_KINDS.get(openinference.upper(), "custom")
    return "custom"


def span_write(span: OtlpSpan, resource: dict[str, Any], scope: str) -> SpanWrite:
    """One OTLP span as the store's span (the ids as lower-case hex, as every OTel tool shows them)."""
    attrs = attributes(span.attributes)
    events = [(event.name, attributes(event.attributes)) for event in span.events]
    kind = kind_of(attrs)
    status = _STATUS.get(span.status.code, "unset")
    error = span.status.message or None
    if status == "error" and error is None:
        # The exception event says what failed when the status does not (the SDK's record_exception).
        for name, event_attrs in events:
            if name == "exception":
                error = str(event_attrs.get("exception.message") or event_attrs.get("exception.type") or "")
                error = error or None
                break
        error = error or attrs.get("error.type") or "error"

    event_inputs, event_outputs = _messages_from_events(events)
    input_: Any = None
    output: Any = None
    if kind == "tool":
        input_ = _json_or_text(_first(attrs, "gen_ai.tool.call.arguments", "input.value"))
        output = _json_or_text(_first(attrs, "gen_ai.tool.call.result", "output.value"))
    if input_ is None:
        input_ = (
            _json_or_text(_first(attrs, "gen_ai.input.messages"))
            or _unflatten(attrs, "gen_ai.prompt")
            or _json_or_text(_first(attrs, "gen_ai.prompt", "input.value"))
            or event_inputs
            or None
        )
    if output is None:
        output = (
            _json_or_text(_first(attrs, "gen_ai.output.messages"))
            or _unflatten(attrs, "gen_ai.completion")
            or _json_or_text(_first(attrs, "gen_ai.completion", "output.value"))
            or event_outputs
            or None
        )
    instructions = _json_or_text(_first(attrs, "gen_ai.system_instructions"))
    if instructions is not None and isinstance(input_, list):
        # The newer conventions send the system prompt apart from the messages: one list reads best.
        input_ = [{"role": "system", "parts": _as_list(instructions)}, *input_]

    metadata: dict[str, Any] = dict(attrs)
    metadata["otel.span_kind"] = OtlpSpan.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_").lower()
    if scope:
        metadata["otel.scope.name"] = scope
    if resource:
        metadata["otel.resource"] = resource
    if span.events:
        # Span events are kept with their span (a span sent again replaces them with what it says).
        metadata["otel.events"] = [
            {"name": name, "time": _iso(_time(event.time_unix_nano)), "attributes": event_attrs}
            for event, (name, event_attrs) in zip(span.events, events, strict=True)
        ]
    if span.links:
        metadata["otel.links"] = [
            {
                "trace_id": link.trace_id.hex(),
                "span_id": link.span_id.hex(),
                "attributes": attributes(link.attributes),
            }
            for link in span.links
        ]
    input_tokens = _int(_first(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"))
    output_tokens = _int(_first(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"))
    return SpanWrite(
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() or None,
        name=span.name or str(attrs.get("gen_ai.tool.name") or "span"),
        kind=kind,
        status=status,
        input=input_,
        output=output,
        error=error,
        metadata=metadata,
        start_time=_time(span.start_time_unix_nano),
        end_time=_time(span.end_time_unix_nano),
        model=_str(_first(attrs, "gen_ai.response.model", "gen_ai.request.model")),
        provider=_str(_first(attrs, "gen_ai.provider.name", "gen_ai.system")),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        # Not in the conventions; some instrumentations (and Everloop's export) send it.
        cost=_decimal(_first(attrs, "gen_ai.usage.cost")),
    )


def _str(value: Any) -> str | None:
    return str(value)[:255] if value is not None else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _rejection(span: OtlpSpan) -> str | None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return "trace_id must be 16 bytes, not all zero"
    if len(span.span_id) != 8 or not any(span.span_id):
        return "span_id must be 8 bytes, not all zero"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return "parent_span_id must be 8 bytes or empty"
    return None


OTHER_PROJECT = "trace_id belongs to another project of the account"

# --- storing ------------------------------------------------------------------------------------


async def ingest(
    db: AsyncSession,
    owner_id: uuid.UUID,
    request: ExportTraceServiceRequest,
    project_id: uuid.UUID | None = None,
) -> ExportTraceServiceResponse:
    """Stores the request's spans in `project_id` (a project key's project) or else the caller's
    default project, all in one transaction (a batch is all-or-nothing; spans with malformed ids are
    rejected and counted, as OTLP's partial success says). A span sent again replaces what it said:
    exporters retry. With `project_id`, a trace the owner has in another project is not added to:
    its spans are rejected and counted too."""
    by_trace: dict[str, dict[str, SpanWrite]] = {}
    trace_fields: dict[str, dict[str, Any]] = {}
    rejected = 0
    reasons: list[str] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                reason = _rejection(span)
                if reason is not None:
                    rejected += 1
                    if reason not in reasons:
                        reasons.append(reason)
                    continue
                trace_id = span.trace_id.hex()
                written = span_write(span, resource, scope_spans.scope.name)
                # The last copy wins: one statement cannot update a row twice.
                by_trace.setdefault(trace_id, {})[written.span_id] = written
                fields = trace_fields.setdefault(trace_id, {})
                attrs = written.metadata
                if session := _first(attrs, "gen_ai.conversation.id", "session.id"):
                    fields.setdefault("session_id", str(session)[:255])
                if user := _first(attrs, "user.id", "enduser.id"):
                    fields.setdefault("user_id", str(user)[:255])
                if written.parent_span_id is None:
                    fields["name"] = written.name
                    fields["status"] = written.status
    if by_trace and project_id is not None:
        # A project key writes into its project only: never into a trace of another project.
        elsewhere = (
            await db.scalars(
                select(Trace.trace_id).where(
                    Trace.owner_id == owner_id,
                    Trace.trace_id.in_(list(by_trace)),
                    Trace.project_id != project_id,
                )
            )
        ).all()
        for trace_id in elsewhere:
            rejected += len(by_trace.pop(trace_id))
            if OTHER_PROJECT not in reasons:
                reasons.append(OTHER_PROJECT)
    if by_trace:
        project_id = project_id or await default_project(db, owner_id)
        for trace_id, spans in by_trace.items():
            fields = trace_fields[trace_id]
            trace_pk = await ensure_trace(db, owner_id, project_id, trace_id, **fields)
            if fields:
                # A trace made by an earlier batch learns what this one says of it (its root span, the
                # conversation it belongs to) without overwriting what another batch set; the root
                # span's status is the trace's.
                known = {
                    key: func.coalesce(getattr(Trace, key), value)
                    for key, value in fields.items()
                    if key != "status"
                }
                if "status" in fields:
                    known["status"] = fields["status"]
                await db.execute(update(Trace).where(Trace.id == trace_pk).values(**known))
            rows = list(spans.values())
            for start in range(0, len(rows), UPSERT_CHUNK):
                await upsert_spans(db, owner_id, trace_pk, rows[start : start + UPSERT_CHUNK])
    await db.commit()
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message="; ".join(reasons))
        )
    return response
