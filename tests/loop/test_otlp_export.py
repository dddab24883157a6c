"""OTLP out (services/otlp_export.py): with an exporter set, the worker sends each finished turn's
spans, read back from the store, with the GenAI conventions, to an OTLP/HTTP receiver (a tiny one
here, that decodes the protobuf with the official classes); a backend that is down fails nothing.
At least once: a turn the backend did not take (it was down, the worker died after the turn's end,
a retried end) is sent by the sweep later, with the same ids, and a turn it took is not sent again."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from sqlalchemy import select, text, update
from temporalio.client import Client

from activities.deps import LoopDeps
from activities.turns import TurnActivities
from core import bus
from core.db import Database
from core.db.traces import EXPORT_DUE, Span, Trace
from core.schemas.turns import TurnEnd
from core.settings import SettingsError
from everloop.stack import Endpoints
from everloop.sweeper import ExportSweep
from everloop.worker import build_worker
from services.otlp_export import _DUE, TurnExporter, sole_sweeper, span_id_of, trace_id_of
from services.otlp_ingest import attributes
from tests.apps import app_for
from tests.conftest import make_settings
from tests.loop.conftest import Loop
from tests.servers import running


class Receiver:
    """An OTLP/HTTP trace receiver: keeps every span it is sent, with its resource's attributes.
    While `down`, it answers 503 to every request (as a backend that is away) and keeps nothing."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], OtlpSpan]] = []
        self.requests = 0  # taken
        self.refused = 0
        self.down = False
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
        if self.down:
            with self.changed:
                self.refused += 1
                self.changed.notify_all()
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        request = ExportTraceServiceRequest.FromString(body)
        with self.changed:
            self.requests += 1
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
            # A short timeout: a send to the receiver while it is down gives up after one retry.
            OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces", timeout=2),
            "everloop-test",
            retry_after_s=0.0,  # the sweep takes a turn as soon as it ended
        )
        worker = build_worker(temporal_client, settings, db, redis, exporter=exporter)
        with running(app_for(settings, configure_logs=False)) as server:
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


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    """Polls `check` until it holds (a database row another task writes), failing after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def exported_at(db: Database, turn_id: str) -> datetime | None:
    async with db.session() as s:
        (found,) = (await s.execute(select(Trace.exported_at).where(Trace.trace_id == turn_id))).one()
        return found


async def stored_ids(db: Database, turn_id: str) -> set[tuple[bytes, bytes]]:
    """The turn's stored spans as the OTel (span id, parent id) the export must give them."""
    async with db.session() as s:
        rows = (
            await s.execute(
                select(Span.span_id, Span.parent_span_id)
                .join(Trace, Trace.id == Span.trace_pk)
                .where(Trace.trace_id == turn_id)
            )
        ).all()
    return {
        (span_id_of(span).to_bytes(8, "big"), span_id_of(parent).to_bytes(8, "big") if parent else b"")
        for span, parent in rows
    }


def sent_ids(spans: list[OtlpSpan]) -> set[tuple[bytes, bytes]]:
    return {(s.span_id, s.parent_span_id) for s in spans}


async def turn_of(loop: Loop, base: str) -> tuple[str, str]:
    """The session's last turn: its id and its message's id."""
    started = [e for e in await loop.stored(base) if e.type == "turn.started"][-1]
    return started.data["turn_id"], started.data["input_message_id"]


async def test_a_finished_turn_is_exported_with_the_genai_conventions(
    exporting: tuple[Loop, Receiver, TurnExporter],
) -> None:
    loop, receiver, exporter = exporting
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

    # Taken by the backend: marked, and the sweep owes it nothing.
    await eventually(lambda: _is_exported(loop.db, turn_id))
    requests = receiver.requests
    assert await ExportSweep(loop.db, exporter).run_once() == 0
    assert receiver.requests == requests


async def _is_exported(db: Database, turn_id: str) -> bool:
    return await exported_at(db, turn_id) is not None


async def test_a_turn_the_backend_missed_is_sent_by_the_sweep_once_it_is_back(
    exporting: tuple[Loop, Receiver, TurnExporter],
) -> None:
    loop, receiver, exporter = exporting
    receiver.down = True
    base = await loop.chat(simulator={"mode": "script", "script": ["hello"]})
    frames = await loop.send(base, "hi")
    assert frames[-1]["type"] == "turn.completed"  # the backend's outage fails no turn
    turn_id, _ = await turn_of(loop, base)
    await exporter.drain()  # the worker's send, refused
    assert receiver.refused >= 1 and receiver.spans == []
    assert await exported_at(loop.db, turn_id) is None
    assert exporter.paused() and exporter.failures == 1  # backing off: fresh turns wait too
    sweep = ExportSweep(loop.db, exporter)
    assert await sweep.run_once() == 0  # still down: the run stops at the first refusal
    assert exporter.failures == 2 and await exported_at(loop.db, turn_id) is None

    receiver.down = False
    exporter._held.clear()  # the sweep's backoff for this turn, not waited out here
    assert await sweep.run_once() == 1
    spans = await receiver.wait_for(trace_id_of(turn_id), 2)
    # Exactly the turn's spans (its root and its one LLM call), with the ids the store gives them.
    assert len(spans) == 2 and sent_ids(spans) == await stored_ids(loop.db, turn_id)
    assert await exported_at(loop.db, turn_id) is not None
    assert not exporter.paused() and exporter.failures == 0
    requests = receiver.requests
    assert await sweep.run_once() == 0  # taken: not sent again
    assert receiver.requests == requests and len(receiver.spans) == 2


async def test_a_turn_no_exporter_sent_is_sent_by_the_sweep_once(loop: Loop) -> None:
    """As a worker killed right after storing a turn's end: the end and the spans are stored, and
    nothing was sent (this worker has no exporter). Another worker's sweep sends it."""
    base = await loop.chat(simulator={"mode": "script", "script": ["hello"]})
    await loop.send(base, "hi")
    turn_id, _ = await turn_of(loop, base)
    assert await exported_at(loop.db, turn_id) is None
    receiver = Receiver()
    with running(receiver, health_path=None) as collector:
        exporter = TurnExporter(OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces"), retry_after_s=3600)
        try:
            # Not before OTLP_EXPORT_RETRY_AFTER: the turn's own worker may still be sending it.
            assert await ExportSweep(loop.db, exporter).run_once() == 0
            assert receiver.requests == 0
            exporter.retry_after_s = 0.0
            # One worker's sweep at a time: while another holds the lock, this one sends nothing.
            async with sole_sweeper(loop.db) as mine:
                assert mine
                assert await ExportSweep(loop.db, exporter).run_once() == 0
            assert receiver.requests == 0

            assert await ExportSweep(loop.db, exporter).run_once() == 1
            spans = await receiver.wait_for(trace_id_of(turn_id), 2)
            assert sent_ids(spans) == await stored_ids(loop.db, turn_id)
            marked = await exported_at(loop.db, turn_id)
            assert marked is not None
            assert await ExportSweep(loop.db, exporter).run_once() == 0  # a second sweep sends nothing
            assert receiver.requests == 1 and await exported_at(loop.db, turn_id) == marked
        finally:
            await exporter.shutdown()


async def test_a_retried_turn_end_sends_the_turn_once(loop: Loop) -> None:
    """`finish_turn` again for a turn whose end an earlier attempt stored (and whose worker died
    before sending it): it stores nothing new, and hands the turn over all the same; a third
    attempt finds it sent and sends nothing."""
    base = await loop.chat(simulator={"mode": "script", "script": ["hello"]})
    await loop.send(base, "hi")
    turn_id, message_id = await turn_of(loop, base)
    end = TurnEnd(
        session_id=base.rsplit("/", 1)[1],
        turn_id=turn_id,
        input_message_id=message_id,
        outcome="completed",
        iterations=1,
        duration_ms=1,
    )
    receiver = Receiver()
    redis = bus.connect(loop.endpoints.redis_url)
    with running(receiver, health_path=None) as collector:
        exporter = TurnExporter(OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces"))
        deps = LoopDeps(db=loop.db, bus=redis, settings=loop.settings, secrets=None, exporter=exporter)
        try:
            events = len(await loop.stored(base))
            await TurnActivities(deps).finish_turn(end)
            await exporter.drain()
            assert len(await loop.stored(base)) == events  # nothing stored twice
            spans = await receiver.wait_for(trace_id_of(turn_id), 2)
            assert sent_ids(spans) == await stored_ids(loop.db, turn_id)
            assert await exported_at(loop.db, turn_id) is not None
            await TurnActivities(deps).finish_turn(end)
            await exporter.drain()
            assert receiver.requests == 1
        finally:
            await exporter.shutdown()
            await redis.aclose()


async def test_a_backend_that_is_down_fails_no_turn(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> None:
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    redis = bus.connect(endpoints.redis_url)
    # Port 9 (discard): nothing listens, every export is refused.
    exporter = TurnExporter(OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", timeout=1))
    worker = build_worker(temporal_client, settings, db, redis, exporter=exporter)
    try:
        with running(app_for(settings, configure_logs=False)) as server:
            async with worker, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                loop = Loop(client, db, endpoints, settings, temporal_client, simulator_url, worker)
                base = await loop.chat(simulator={"mode": "script", "script": ["hello"]})
                frames = await loop.send(base, "hi")
                assert frames[-1]["type"] == "turn.completed"
                second = await loop.send(base, "again")
                assert second[-1]["type"] == "turn.completed"
                await exporter.drain()  # the first turn's send failed; the second waited (backoff)
                assert exporter.failures == 1 and exporter.paused()
                for turn in [e for e in await loop.stored(base) if e.type == "turn.started"]:
                    assert await exported_at(db, turn.data["turn_id"]) is None  # owed: the sweep's
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
    assert exporter.retry_after_s == 60.0
    exporter.exporter.shutdown()
    assert TurnExporter.from_settings(make_settings(endpoints)) is None
    later = make_settings(
        endpoints, OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318", OTLP_EXPORT_RETRY_AFTER="300"
    )
    assert later.otlp_export_retry_after_s == 300.0
    with pytest.raises(SettingsError, match="OTLP_EXPORT_RETRY_AFTER"):
        make_settings(endpoints, OTLP_EXPORT_RETRY_AFTER="0")
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_HEADERS") as bad:
        make_settings(endpoints, OTEL_EXPORTER_OTLP_HEADERS="secret-without-equals")
    assert "secret-without-equals" not in str(bad.value)
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        make_settings(endpoints, OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318")


MIGRATION = Path(__file__).parents[2] / "core/migrations/versions/20261129_0017_trace_export_mark.py"


async def test_the_migration_marks_the_turns_that_ended_before_it(loop: Loop) -> None:
    """Turning export on after upgrading sends no history: the agent turns that had ended are marked
    exported; a turn still running then is not (it is sent when it ends), nor an outside app's trace
    (never exported)."""
    spec = importlib.util.spec_from_file_location("migration_0017", MIGRATION)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    ended = await loop.chat(simulator={"mode": "script", "script": ["hello"]})
    await loop.send(ended, "hi")
    ended_turn, _ = await turn_of(loop, ended)
    running_ = await loop.chat(simulator={"mode": "script", "script": ["hello"]})
    await loop.send(running_, "hi")
    running_turn, _ = await turn_of(loop, running_)
    span = {
        "span_id": "s1",
        "trace_id": "outside-1",
        "name": "call",
        "kind": "llm",
        "status": "ok",
        "start_time": "2026-11-29T12:00:00Z",
        "end_time": "2026-11-29T12:00:01Z",
    }
    response = await loop.client.post("/v1/traces", json={"trace_name": "app", "spans": [span]})
    assert response.status_code < 300, response.text
    async with loop.db.session() as s:
        # As a turn still running at upgrade time: its trace's status is not set yet.
        await s.execute(update(Trace).where(Trace.trace_id == running_turn).values(status="unset"))
        await s.execute(update(Trace).where(Trace.trace_id == "outside-1").values(status="ok"))
        await s.execute(text(migration.MARK_EXISTING))
        await s.commit()
    assert await exported_at(loop.db, ended_turn) is not None
    assert await exported_at(loop.db, running_turn) is None
    assert await exported_at(loop.db, "outside-1") is None
    assert migration.EXPORT_DUE == EXPORT_DUE  # the migration's copy of the index's predicate
    # The sweep's query is one the partial index answers (its predicate, literally).
    async with loop.db.session() as s:
        await s.execute(text("SET LOCAL enable_seqscan = off"))
        explain = text(f"EXPLAIN {_DUE.text}")
        params = {"after": 0.0, "horizon": 3600.0, "held": [], "batch": 50}
        plan = "\n".join(str(row[0]) for row in await s.execute(explain, params))
    assert "ix_traces_export_due" in plan, plan
