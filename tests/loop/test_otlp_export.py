"""OTLP out (services/otlp_export.py): with an exporter set, the worker sends each finished turn's
spans, read back from the store, with the GenAI conventions, to an OTLP/HTTP receiver (a tiny one
here, that decodes the protobuf with the official classes); a backend that is down fails nothing."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from temporalio.client import Client

from api.app import create_app
from core import bus
from core.db import Database
from core.settings import SettingsError
from everloop.stack import Endpoints
from everloop.worker import build_worker
from services.otlp_export import TurnExporter, span_id_of, trace_id_of
from services.otlp_ingest import attributes
from tests.conftest import make_settings
from tests.loop.conftest import Loop
from tests.servers import running


class Receiver:
    """An OTLP/HTTP trace receiver: keeps every span it is sent, with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], OtlpSpan]] = []
        self.changed = threading.Condition()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = ExportTraceServiceRequest.FromString(body)
        with self.changed:
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    self.spans += [(resource, s) for s in scope_spans.spans]
            self.changed.notify_all()
        answer = ExportTraceServiceResponse().SerializeToString()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/x-protobuf")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def wait_for(self, trace_id: int, count: int, timeout: float = 20) -> list[OtlpSpan]:
        """The spans of `trace_id`, once `count` have come."""
        wanted = trace_id.to_bytes(16, "big")

        def of_trace() -> list[OtlpSpan]:
            return [s for _, s in self.spans if s.trace_id == wanted]

        def wait() -> list[OtlpSpan]:
            with self.changed:
                self.changed.wait_for(lambda: len(of_trace()) >= count, timeout)
                return of_trace()

        return await asyncio.to_thread(wait)


@pytest.fixture
async def exporting(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> AsyncIterator[tuple[Loop, Receiver, TurnExporter]]:
    receiver = Receiver()
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    redis = bus.connect(endpoints.redis_url)
    with running(receiver, health_path=None) as collector:
        exporter = TurnExporter(
            OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces"), "everloop-test", delay_ms=50
        )
        worker = build_worker(temporal_client, settings, db, redis, exporter=exporter)
        with running(create_app(settings, configure_logs=False)) as server:
            async with worker, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                yield (
                    Loop(client, db, endpoints, settings, temporal_client, simulator_url, worker),
                    receiver,
                    exporter,
                )
        await exporter.shutdown()
    await redis.aclose()


def attrs(span: OtlpSpan) -> dict[str, Any]:
    return attributes(span.attributes)


async def test_a_finished_turn_is_exported_with_the_genai_conventions(
    exporting: tuple[Loop, Receiver, TurnExporter],
) -> None:
    loop, receiver, _ = exporting
    script = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "2 + 3 = 5"]
    base = await loop.chat(
        simulator={"mode": "script", "script": script}, capabilities=["test_math"], name="Adder"
    )
    await loop.send(base, "what is 2+3?")
    stored = await loop.stored(base)
    turn_id = next(e for e in stored if e.type == "turn.started").data["turn_id"]
    call_id = next(e for e in stored if e.type == "tool.call_started").data["tool_call"]["id"]

    spans = await receiver.wait_for(trace_id_of(turn_id), 4)
    assert len(spans) == 4
    assert trace_id_of(turn_id) == uuid.UUID(turn_id).int  # a turn's OTel trace id is its own id
    by_kind: dict[str, list[OtlpSpan]] = {}
    for span in spans:
        by_kind.setdefault(attrs(span)["everloop.kind"], []).append(span)
    (root,) = by_kind["agent"]
    llms = sorted(by_kind["llm"], key=lambda s: s.start_time_unix_nano)
    (tool,) = by_kind["tool"]
    assert len(llms) == 2

    session_id = base.rsplit("/", 1)[1]
    assert root.name == "invoke_agent Adder" and root.parent_span_id == b""
    assert root.span_id == span_id_of(turn_id).to_bytes(8, "big")
    assert attrs(root)["gen_ai.operation.name"] == "invoke_agent"
    assert attrs(root)["gen_ai.agent.name"] == "Adder"
    assert attrs(root)["gen_ai.conversation.id"] == session_id
    opening = json.loads(attrs(root)["gen_ai.input.messages"])
    assert opening == [{"role": "user", "parts": [{"type": "text", "content": "what is 2+3?"}]}]
    assert root.status.code == root.status.STATUS_CODE_OK

    first = attrs(llms[0])
    assert llms[0].kind == OtlpSpan.SPAN_KIND_CLIENT and llms[0].parent_span_id == root.span_id
    assert first["gen_ai.operation.name"] == "chat" and llms[0].name.startswith("chat")
    assert first["gen_ai.request.model"] and first["gen_ai.provider.name"]
    assert first["gen_ai.usage.input_tokens"] > 0 and first["gen_ai.usage.output_tokens"] > 0
    asked = json.loads(first["gen_ai.input.messages"])
    assert asked[-1]["role"] == "user" and asked[-1]["parts"][0]["content"] == "what is 2+3?"
    (answer,) = json.loads(first["gen_ai.output.messages"])
    assert answer["finish_reason"] == "tool_call"
    assert answer["parts"][0]["name"] == "add" and answer["parts"][0]["arguments"] == {"a": 2, "b": 3}
    (final,) = json.loads(attrs(llms[1])["gen_ai.output.messages"])
    assert final["parts"] == [{"type": "text", "content": "2 + 3 = 5"}] and final["finish_reason"] == "stop"

    assert tool.name == "execute_tool add" and tool.parent_span_id == root.span_id
    assert attrs(tool)["gen_ai.tool.name"] == "add"
    assert attrs(tool)["gen_ai.tool.call.id"] == call_id
    assert json.loads(attrs(tool)["gen_ai.tool.call.arguments"]) == {"a": 2, "b": 3}
    assert "5" in attrs(tool)["gen_ai.tool.call.result"]
    assert all(s.end_time_unix_nano >= s.start_time_unix_nano > 0 for s in spans)
    resource = next(r for r, s in receiver.spans if s.span_id == root.span_id)
    assert resource["service.name"] == "everloop-test"


async def test_a_backend_that_is_down_fails_no_turn(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> None:
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    redis = bus.connect(endpoints.redis_url)
    # Port 9 (discard): nothing listens, every export is refused.
    exporter = TurnExporter(OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", timeout=1), delay_ms=50)
    worker = build_worker(temporal_client, settings, db, redis, exporter=exporter)
    try:
        with running(create_app(settings, configure_logs=False)) as server:
            async with worker, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                loop = Loop(client, db, endpoints, settings, temporal_client, simulator_url, worker)
                base = await loop.chat(simulator={"mode": "script", "script": ["hello"]})
                frames = await loop.send(base, "hi")
                assert frames[-1]["type"] == "turn.completed"
                second = await loop.send(base, "again")
                assert second[-1]["type"] == "turn.completed"
                await exporter.drain()  # the turns were read and handed to the (failing) exporter
    finally:
        await exporter.shutdown()
        await redis.aclose()


def test_otlp_export_settings(endpoints: Endpoints) -> None:
    settings = make_settings(
        endpoints,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318",
        OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20abc, x-tenant = t1",
        OTEL_SERVICE_NAME="agents",
    )
    assert settings.otel_exporter_otlp_endpoint == "http://collector:4318"
    assert settings.otel_exporter_otlp_headers == {"Authorization": "Bearer abc", "x-tenant": "t1"}
    exporter = TurnExporter.from_settings(settings)
    assert exporter is not None and exporter.resource.attributes["service.name"] == "agents"
    exporter.processor.shutdown()  # type: ignore[no-untyped-call]
    assert TurnExporter.from_settings(make_settings(endpoints)) is None
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_HEADERS") as bad:
        make_settings(endpoints, OTEL_EXPORTER_OTLP_HEADERS="secret-without-equals")
    assert "secret-without-equals" not in str(bad.value)
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        make_settings(endpoints, OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318")
