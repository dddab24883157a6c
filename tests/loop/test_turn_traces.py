"""Agent turns are traces (services/turn_traces.py): the spans a turn's steps write with their
events, in the same transactions, once per step."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, delete, select

from core.db import Database
from core.db.models import Agent, Event, Span, Trace
from everloop.stack import Endpoints
from services import traces
from services.turn_traces import llm_span_id, tool_span_id
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.loop.conftest import Loop
from tests.servers import running
from tests.workers import Workers


async def _trace(db: Database, session_id: uuid.UUID) -> tuple[Trace, list[Span]]:
    async with db.session() as s:
        found = (await s.execute(select(Trace).where(Trace.session_id == str(session_id)))).scalars().all()
        assert len(found) == 1
        spans = (await s.execute(select(Span).where(Span.trace_pk == found[0].id))).scalars().all()
        return found[0], sorted(spans, key=lambda x: (x.start_time is None, x.start_time))


def _session_id(base: str) -> uuid.UUID:
    return uuid.UUID(base.rsplit("/", 1)[1])


async def test_a_one_tool_turn_is_a_trace_with_a_root_two_llm_spans_and_a_tool_span(loop: Loop) -> None:
    script = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "2 + 3 = 5"]
    base = await loop.chat(
        simulator={"mode": "script", "script": script}, capabilities=["test_math"], name="Adder"
    )
    await loop.send(base, "what is 2+3?")
    stored = await loop.stored(base)
    trace, spans = await _trace(loop.db, _session_id(base))
    turn_id = next(e for e in stored if e.type == "turn.started").data["turn_id"]
    call_id = next(e for e in stored if e.type == "tool.call_started").data["tool_call"]["id"]
    async with loop.db.session() as s:
        agent = await s.get(Agent, trace.agent_id)
        assert agent is not None
        project = await traces.default_project(s, agent.owner_id)
    assert (trace.trace_id, trace.name, trace.status) == (turn_id, "Adder", "ok")
    assert trace.user_id == str(agent.owner_id) and trace.project_id == project
    assert trace.metadata_ == {"outcome": "completed"}

    by_id = {span.span_id: span for span in spans}
    assert set(by_id) == {
        turn_id,
        llm_span_id(turn_id, 1),
        llm_span_id(turn_id, 2),
        tool_span_id(turn_id, call_id),
    }
    root = by_id[turn_id]
    assert (root.kind, root.parent_span_id, root.status, root.name) == ("agent", None, "ok", "Adder")
    assert all(s.parent_span_id == turn_id for s in spans if s is not root)
    assert all(s.status == "ok" and s.end_time is not None and s.start_time is not None for s in spans)
    assert all(root.start_time <= s.start_time and s.end_time <= root.end_time for s in spans)  # type: ignore[operator]
    tool = by_id[tool_span_id(turn_id, call_id)]
    assert (tool.kind, tool.name) == ("tool", "add")
    # The content is referenced, not copied: the step's events are its input and output.
    generations = [e for e in stored if e.type == "llm.generation"]
    llm_spans = [by_id[llm_span_id(turn_id, 1)], by_id[llm_span_id(turn_id, 2)]]
    assert [s.source_event_id for s in llm_spans] == [e.id for e in generations]
    assert all(s.input is None and s.output is None for s in spans)
    completed = next(e for e in stored if e.type == "tool.call_completed")
    assert tool.source_event_id == completed.id

    # The aggregates equal the events'.
    usage = [e.data["metadata"] for e in generations]
    assert trace.input_tokens == sum(u["usage"]["input_tokens"] for u in usage) > 0
    assert trace.output_tokens == sum(u["usage"]["output_tokens"] for u in usage) > 0
    assert trace.total_cost == sum(Decimal(str(u["cost"])) for u in usage)
    assert trace.models_used == sorted({u["model"] for u in usage})
    assert [s.model for s in llm_spans] == [u["model"] for u in usage]
    assert [s.provider for s in llm_spans] == [u["provider"] for u in usage]
    assert (trace.span_count, trace.step_count, trace.error_count) == (4, 3, 0)
    assert trace.started_at == root.start_time and trace.ended_at == root.end_time

    # Every API reads the content through the one helper.
    async with loop.db.session() as s:
        contents = await traces.span_contents(s, spans)
    first_in, first_out = contents[llm_spans[0].id]
    assert first_in["system_prompt"] == generations[0].data["system_prompt"]
    assert first_out["tool_calls"][0]["name"] == "add"
    assert contents[llm_spans[1].id][1]["text"] == "2 + 3 = 5"
    assert contents[tool.id] == (
        {"name": "add", "arguments": {"a": 2, "b": 3}},
        {"status": "success", "result": completed.data["result"], "error": None},
    )
    root_in, root_out = contents[root.id]
    assert root_in["content"][0]["text"] == "what is 2+3?"
    assert root_out["type"] == "turn.completed"

    # A second turn is a second trace; deleting the session deletes both.
    await loop.send(base, "again")
    async with loop.db.session() as s:
        count = (await s.execute(select(Trace.id).where(Trace.session_id == str(_session_id(base))))).all()
    assert len(count) == 2
    assert (await loop.client.delete(base)).status_code == 204
    async with loop.db.session() as s:
        left = (await s.execute(select(Trace.id).where(Trace.session_id == str(_session_id(base))))).all()
    assert left == []


async def test_a_failed_turn_is_an_error_trace_and_its_call_span_is_closed(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "fixed", "text": "x", "error": {"status": 401}})
    await loop.send(base, "hi")
    stored = await loop.stored(base)
    failed = next(e for e in stored if e.type == "turn.failed")
    trace, spans = await _trace(loop.db, _session_id(base))
    assert trace.status == "error"
    root = next(s for s in spans if s.kind == "agent")
    assert (root.status, root.error, root.source_event_id) == ("error", failed.data["error"], failed.id)
    assert root.metadata_["error_code"] == "llm_error"
    # The call that failed stored no generation: its span ends with the turn, as an error.
    [llm] = [s for s in spans if s.kind == "llm"]
    assert (llm.status, llm.end_time, llm.source_event_id) == ("error", root.end_time, None)
    assert trace.error_count == 2


async def test_a_cancelled_turn_ends_its_trace(loop: Loop) -> None:
    text = " ".join(f"word{i}" for i in range(100))
    base = await loop.chat(simulator={"mode": "fixed", "text": text, "chunk_delay": 0.3})
    sending = asyncio.create_task(loop.send(base, "talk slowly"))
    while not any(e.type == "reason.started" for e in await loop.stored(base)):
        await asyncio.sleep(0.05)
    assert (await loop.client.post(f"{base}/cancel")).status_code == 200
    frames = await asyncio.wait_for(sending, 10)
    assert frames[-1]["type"] == "turn.cancelled"
    trace, spans = await _trace(loop.db, _session_id(base))
    assert (trace.status, trace.metadata_) == ("error", {"outcome": "cancelled"})
    root = next(s for s in spans if s.kind == "agent")
    assert (root.status, root.metadata_["outcome"]) == ("error", "cancelled")
    assert all(s.end_time is not None for s in spans)


async def test_a_worker_killed_mid_turn_still_leaves_one_span_per_step(
    endpoints: Endpoints, db: Database, simulator_url: str, task_queue: str, workers: Workers
) -> None:
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    first = workers.start()
    words = " ".join(f"w{i}" for i in range(60))
    script = [
        {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]},
        words,
    ]
    with running(app_for(settings, configure_logs=False)) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            provider = await factories.provider(client, base_url=simulator_url)
            model = await factories.model(
                client, provider["id"], settings={"mode": "script", "script": script, "chunk_delay": 0.05}
            )
            agent = await factories.agent(client, default_model_id=model["id"], capabilities=["test_math"])
            session = await factories.session(client, agent["id"])
            base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
            session_id = uuid.UUID(session["id"])
            posted = await client.post(f"{base}/messages", json=factories.text_message("add then speak"))
            assert posted.status_code == 201

            async def types() -> list[str]:
                async with db.session() as s:
                    query = select(Event.type).where(Event.session_id == session_id)
                    return list((await s.execute(query)).scalars())

            async def until(kind: str, count: int = 1) -> None:
                while (await types()).count(kind) < count:
                    await asyncio.sleep(0.05)

            # Killed while the second reason step streams: after the tool's span, before its reply.
            await asyncio.wait_for(until("reason.started", 2), 60)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            workers.start()
            await asyncio.wait_for(until("turn.completed"), 90)
    trace, spans = await _trace(db, session_id)
    kinds = sorted(s.kind for s in spans)
    assert kinds == ["agent", "llm", "llm", "tool"]
    assert len({s.span_id for s in spans}) == 4
    assert all(s.status == "ok" for s in spans)
    async with db.session() as s:
        stored = (await s.execute(select(Event).where(Event.session_id == session_id))).scalars().all()
    generations = [e for e in stored if e.type == "llm.generation"]
    assert len(generations) == 2
    assert trace.output_tokens == sum(e.data["metadata"]["usage"]["output_tokens"] for e in generations)
    assert trace.status == "ok"


MIGRATION = Path(__file__).parents[2] / "core/migrations/versions/20261129_0015_agent_turns_as_traces.py"
# What the backfill must write as the loop writes it (the row keys and write times differ).
COMPARED = [
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "status",
    "error",
    "metadata_",
    "start_time",
    "end_time",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cost",
    "source_event_id",
    "source_message_id",
    "input",
    "output",
]


async def _upgrade(db: Database) -> None:
    spec = importlib.util.spec_from_file_location("migration_0015", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def run(connection: Connection) -> None:
        with Operations.context(MigrationContext.configure(connection)):
            module.upgrade()

    async with db.engine.begin() as connection:
        await connection.run_sync(run)


def _rows(spans: list[Span]) -> list[dict[str, Any]]:
    return sorted(({c: getattr(s, c) for c in COMPARED} for s in spans), key=lambda r: str(r["span_id"]))


async def test_the_migration_backfills_turns_stored_before_it_as_the_loop_writes_them(loop: Loop) -> None:
    script = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "2 + 3 = 5"]
    done = await loop.chat(simulator={"mode": "script", "script": script}, capabilities=["test_math"])
    await loop.send(done, "what is 2+3?")
    failing = await loop.chat(simulator={"mode": "fixed", "text": "x", "error": {"status": 401}})
    await loop.send(failing, "hi")
    sessions = [_session_id(done), _session_id(failing)]
    live = [await _trace(loop.db, s) for s in sessions]
    # As before this release: the events, no traces.
    async with loop.db.session() as s:
        await s.execute(delete(Trace).where(Trace.session_id.in_([str(x) for x in sessions])))
        await s.commit()
    await _upgrade(loop.db)
    await _upgrade(loop.db)  # idempotent: the second run writes nothing
    for session_id, (trace, spans) in zip(sessions, live, strict=True):
        again, again_spans = await _trace(loop.db, session_id)
        assert _rows(again_spans) == _rows(spans)
        for field in [
            "trace_id",
            "name",
            "status",
            "metadata_",
            "session_id",
            "agent_id",
            "user_id",
            "project_id",
            "started_at",
            "ended_at",
            "duration_ms",
            "total_cost",
            "input_tokens",
            "output_tokens",
            "models_used",
            "span_count",
            "step_count",
            "error_count",
        ]:
            assert getattr(again, field) == getattr(trace, field), field
