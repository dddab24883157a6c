"""OTLP in (`POST /v1/otlp/v1/traces`): the real OpenTelemetry SDK and its OTLP/HTTP exporter send
spans carrying the GenAI semantic conventions, as an instrumentation sets them, to a running server;
the spans are read back from the store. Also OTLP/JSON, partial success, bad bodies and isolation."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar import Litestar
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import select

from core.db import Database
from core.db.models import Span, Trace
from everloop.stack import Endpoints
from tests.api.test_auth_full import clear_rate_limits, full_settings
from tests.apps import app_for
from tests.servers import Server, running

ROUTE = "/v1/otlp/v1/traces"


@pytest.fixture
async def server(endpoints: Endpoints, db: Database) -> AsyncIterator[Server]:
    await clear_rate_limits(endpoints)
    app: Litestar = app_for(full_settings(endpoints), configure_logs=False)
    async with running(app) as served:
        yield served


async def api_key(url: str) -> tuple[str, uuid.UUID]:
    """A new user's `evr_` API key, and the user's id."""
    async with httpx.AsyncClient(base_url=url) as client:
        email = f"{uuid.uuid4().hex[:12]}@example.com"
        tokens = (
            await client.post("/api/auth/register", json={"email": email, "password": "long enough"})
        ).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        me = (await client.get("/api/auth/me", headers=headers)).json()
        key = (await client.post("/api/auth/api-keys", json={"name": "otlp"}, headers=headers)).json()
        return key["key"], uuid.UUID(me["id"])


def instrumented_turn() -> list[ReadableSpan]:
    """What a GenAI instrumentation records for an agent run: an agent span, a chat call (newer
    conventions: messages as JSON), a tool call, and a second chat call in the older, flattened form
    whose completion is a span event; the tool fails with a recorded exception."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "weather-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    with tracer.start_as_current_span("invoke_agent weather", kind=SpanKind.INTERNAL) as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("gen_ai.agent.name", "weather")
        agent.set_attribute("gen_ai.conversation.id", "conv-42")
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as chat:
            chat.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.usage.input_tokens": 120,
                    "gen_ai.usage.output_tokens": 30,
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]
                    ),
                    "gen_ai.output.messages": json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [
                                    {
                                        "type": "tool_call",
                                        "id": "call_1",
                                        "name": "get_weather",
                                        "arguments": {"city": "Paris"},
                                    }
                                ],
                                "finish_reason": "tool_call",
                            }
                        ]
                    ),
                }
            )
        with tracer.start_as_current_span("execute_tool get_weather") as tool:
            tool.set_attributes(
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "get_weather",
                    "gen_ai.tool.call.id": "call_1",
                    "gen_ai.tool.call.arguments": json.dumps({"city": "Paris"}),
                }
            )
            tool.record_exception(TimeoutError("weather service timed out"))
            tool.set_status(Status(StatusCode.ERROR))
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as legacy:
            legacy.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.prompt_tokens": 200,
                    "gen_ai.usage.completion_tokens": 12,
                    "gen_ai.prompt.0.role": "system",
                    "gen_ai.prompt.0.content": "Be brief.",
                    "gen_ai.prompt.1.role": "user",
                    "gen_ai.prompt.1.content": "Weather in Paris?",
                }
            )
            legacy.add_event(
                "gen_ai.choice", {"index": 0, "finish_reason": "stop", "message": '{"content": "Unknown."}'}
            )
    provider.shutdown()
    return list(memory.get_finished_spans())


def export(url: str, key: str, spans: list[ReadableSpan], **options: Any) -> SpanExportResult:
    exporter = OTLPSpanExporter(
        endpoint=f"{url}{ROUTE}", headers={"Authorization": f"Bearer {key}"}, **options
    )
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]


async def spans_of(db: Database, owner: uuid.UUID) -> tuple[list[Trace], dict[str, Span]]:
    async with db.session() as s:
        traces = list((await s.scalars(select(Trace).where(Trace.owner_id == owner))).all())
        rows = (await s.scalars(select(Span).where(Span.owner_id == owner))).all()
        return traces, {f"{r.name}|{r.model or r.kind}": r for r in rows}


async def test_the_sdk_exporter_sends_genai_spans_that_read_back_from_the_store(
    server: Server, db: Database
) -> None:
    key, owner = await api_key(server.url)
    sent = await asyncio.to_thread(instrumented_turn)
    assert await asyncio.to_thread(export, server.url, key, sent) == SpanExportResult.SUCCESS

    traces, spans = await spans_of(db, owner)
    assert len(traces) == 1 and len(spans) == 4
    trace = traces[0]
    root = next(s for s in sent if s.parent is None)
    assert trace.trace_id == f"{root.context.trace_id:032x}"
    assert trace.name == "invoke_agent weather"
    assert trace.session_id == "conv-42"
    assert trace.span_count == 4 and trace.error_count == 1
    assert trace.input_tokens == 320 and trace.output_tokens == 42
    assert trace.models_used == ["gpt-4o", "gpt-4o-2024-08-06"]

    agent = spans["invoke_agent weather|agent"]
    assert agent.kind == "agent" and agent.parent_span_id is None
    assert agent.span_id == f"{root.context.span_id:016x}"
    assert agent.start_time is not None and agent.end_time is not None and agent.start_time <= agent.end_time

    chat = spans["chat gpt-4o|gpt-4o-2024-08-06"]
    assert chat.kind == "llm" and chat.parent_span_id == agent.span_id
    assert chat.provider == "openai" and chat.input_tokens == 120 and chat.output_tokens == 30
    assert chat.input == [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]
    assert chat.output is not None and chat.output[0]["parts"][0]["name"] == "get_weather"
    assert chat.metadata_["gen_ai.request.model"] == "gpt-4o"
    assert chat.metadata_["otel.span_kind"] == "client"
    assert chat.metadata_["otel.resource"]["service.name"] == "weather-app"
    assert chat.metadata_["otel.scope.name"] == "opentelemetry.instrumentation.openai_v2"

    tool = spans["execute_tool get_weather|tool"]
    assert tool.status == "error" and tool.error == "weather service timed out"
    assert tool.input == {"city": "Paris"}
    assert tool.metadata_["gen_ai.tool.call.id"] == "call_1"
    assert [e["name"] for e in tool.metadata_["otel.events"]] == ["exception"]

    legacy = spans["chat gpt-4o|gpt-4o"]
    assert legacy.provider == "openai" and legacy.input_tokens == 200 and legacy.output_tokens == 12
    assert legacy.input == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert legacy.output == [{"index": 0, "finish_reason": "stop", "message": {"content": "Unknown."}}]

    # Exporters retry: the same batch again (gzipped this time) changes nothing.
    again = await asyncio.to_thread(export, server.url, key, sent, compression=Compression.Gzip)
    assert again == SpanExportResult.SUCCESS
    traces_again, spans_again = await spans_of(db, owner)
    assert len(traces_again) == 1 and len(spans_again) == 4 and traces_again[0].span_count == 4


def otlp_json(trace_id: str, *span_ids: str) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js-app"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": f"embeddings {n}",
                                "kind": 3,
                                "startTimeUnixNano": "1764417600000000000",
                                "endTimeUnixNano": "1764417600250000000",
                                "attributes": [
                                    {"key": "gen_ai.operation.name", "value": {"stringValue": "embeddings"}},
                                    {
                                        "key": "gen_ai.request.model",
                                        "value": {"stringValue": "text-embedding-3"},
                                    },
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "8"}},
                                    {"key": "gen_ai.usage.cost", "value": {"doubleValue": 0.0001}},
                                ],
                                "status": {"code": 1},
                                "someFutureField": True,
                            }
                            for n, span_id in enumerate(span_ids)
                        ],
                    }
                ],
            }
        ]
    }


async def test_otlp_json_with_partial_success_for_bad_ids(server: Server, db: Database) -> None:
    key, owner = await api_key(server.url)
    trace_id = "5b8efff798038103d269b633813fc60c"
    body = otlp_json(trace_id, "eee19b7ec3c1b174", "00000000000000000000", "0000000000000000")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as client:
        response = await client.post(ROUTE, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "span_id must be 8 bytes, not all zero"}
    }

    traces, spans = await spans_of(db, owner)
    assert [t.trace_id for t in traces] == [trace_id]
    (span,) = spans.values()
    assert span.span_id == "eee19b7ec3c1b174" and span.kind == "embedding" and span.status == "ok"
    assert span.model == "text-embedding-3" and span.input_tokens == 8 and span.cost == Decimal("0.0001")
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time).total_seconds() == 0.25
    assert span.metadata_["otel.resource"] == {"service.name": "js-app"}


async def test_bad_bodies_and_credentials(server: Server) -> None:
    key, _ = await api_key(server.url)
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.url) as client:
        proto = {"Content-Type": "application/x-protobuf"}
        assert (await client.post(ROUTE, content=b"", headers=proto)).status_code == 401
        assert (
            await client.post(ROUTE, content=b"\xff\xff\xff", headers={**auth, **proto})
        ).status_code == 400
        garbage = await client.post(
            ROUTE, content=b"not json", headers={**auth, "Content-Type": "application/json"}
        )
        assert garbage.status_code == 400 and "JSON" in garbage.json()["error"]
        not_hex = await client.post(ROUTE, json=otlp_json("zz", "eee19b7ec3c1b174"), headers=auth)
        assert not_hex.status_code == 400 and "traceId must be hex" in not_hex.json()["error"]
        wrong_type = await client.post(ROUTE, json={"resourceSpans": "nope"}, headers=auth)
        assert wrong_type.status_code == 400
        text = await client.post(ROUTE, content=b"x", headers={**auth, "Content-Type": "text/plain"})
        assert text.status_code == 415 and "application/x-protobuf" in text.json()["error"]
        bad_gzip = await client.post(
            ROUTE, content=b"nope", headers={**auth, **proto, "Content-Encoding": "gzip"}
        )
        assert bad_gzip.status_code == 400
        # An empty export is valid: nothing stored, nothing rejected.
        empty = await client.post(ROUTE, content=b"", headers={**auth, **proto})
        assert empty.status_code == 200 and empty.headers["content-type"] == "application/x-protobuf"
        assert ExportTraceServiceResponse.FromString(empty.content) == ExportTraceServiceResponse()


async def test_another_account_sending_the_same_trace_id_gets_its_own_trace(
    server: Server, db: Database
) -> None:
    alice, alice_id = await api_key(server.url)
    bob, bob_id = await api_key(server.url)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    async with httpx.AsyncClient(base_url=server.url) as client:
        for key in (alice, bob):
            sent = await client.post(
                ROUTE,
                json=otlp_json(trace_id, "b7ad6b7169203331"),
                headers={"Authorization": f"Bearer {key}"},
            )
            assert sent.status_code == 200, sent.text
    alice_traces, _ = await spans_of(db, alice_id)
    bob_traces, _ = await spans_of(db, bob_id)
    assert len(alice_traces) == 1 and len(bob_traces) == 1
    assert alice_traces[0].id != bob_traces[0].id
    assert alice_traces[0].project_id != bob_traces[0].project_id
