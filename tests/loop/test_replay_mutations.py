"""Replays with per-span mutations (seed 001, issue 14; docs/replay.md): the mutated LLM spans are
re-executed through the caller's models (the simulator, over HTTP), the re-run is a new trace linked
to the original, tool spans are reused, and a worker killed mid-call loses nothing."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.deps import LoopDeps
from activities.replay import ReplayActivities
from core import bus
from core.db import Database
from core.db.models import Event
from core.db.replays import Replay
from core.identity import BUILTIN_ADMIN, BUILTIN_ADMIN_ID
from core.schemas.replays import SPANS_AT_ONCE, ReplayLoop, ReplayRequest, ReplaySpanInput
from everloop import sweeper
from everloop.stack import Endpoints
from everloop.worker import WORKFLOWS
from services import drift, replays
from services.replays import HISTORY_GONE, NO_MESSAGES
from services.turn_traces import llm_span_id, tool_span_id
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.loop.conftest import Loop
from tests.replaying import replay
from tests.servers import running
from tests.workers import Workers

HISTORIES = Path(__file__).resolve().parents[1] / "workflows" / "histories"


async def _replay(client: httpx.AsyncClient, trace_id: str, mutations: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/v1/traces/{trace_id}/replay", json={"mutations": mutations})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _model(loop: Loop, provider_id: str, name: str, settings: dict[str, Any]) -> dict[str, Any]:
    return await factories.model(loop.client, provider_id, model_id=name, settings=settings)


async def test_a_recorded_turn_replayed_with_another_model_shows_both_answers(loop: Loop) -> None:
    script = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "2 + 3 = 5"]
    provider = await factories.provider(loop.client, base_url=loop.simulator_url)
    recorded = await _model(loop, provider["id"], "sim-script", {"mode": "script", "script": script})
    await _model(loop, provider["id"], "sim-other", {"mode": "fixed", "text": "Five, says the other model."})
    echo = await _model(loop, provider["id"], "sim-echo", {})
    agent = await factories.agent(loop.client, default_model_id=recorded["id"], capabilities=["test_math"])
    session = await factories.session(loop.client, agent["id"])
    base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
    await loop.send(base, "what is 2+3?")
    stored = await loop.stored(base)
    turn_id = next(e for e in stored if e.type == "turn.started").data["turn_id"]
    call_id = next(e for e in stored if e.type == "tool.call_started").data["tool_call"]["id"]
    answer, first, tool = llm_span_id(turn_id, 2), llm_span_id(turn_id, 1), tool_span_id(turn_id, call_id)
    original = (await loop.client.get(f"/v1/traces/{turn_id}")).json()

    mutations = {
        answer: {"model": "sim-other", "temperature": 0.3},
        # The model by its id, and what it reads: the echo model answers the mutated message.
        first: {"model": echo["id"], "messages": [{"role": "user", "content": "ping"}]},
        tool: {"temperature": 0.1},
    }
    body = await _replay(loop.client, turn_id, mutations)
    assert body["status"] == "completed", body
    assert body["original_trace_id"] == turn_id and body["mutations"] == mutations
    replay_id = body["replay_run_id"]
    assert body["result_trace_id"] == f"replay-{replay_id}"
    diffs = {d["span_id"]: d for d in body["diffs"]}
    assert [d["span_id"] for d in body["diffs"]] == [first, tool, answer]  # the trace's order

    d = diffs[answer]
    assert d["original_output"]["text"] == "2 + 3 = 5"
    assert d["mutated_output"] == {"role": "assistant", "content": "Five, says the other model."}
    assert (d["reexecuted"], d["reason"], d["span_name"]) == (True, None, "reason")
    assert d["mutated_input"]["model"] == "sim-other" and d["mutated_input"]["temperature"] == 0.3
    assert d["original_input"]["messages"] == d["mutated_input"]["messages"]  # the recorded history
    assert diffs[first]["mutated_output"]["content"] == "Echo: ping"
    assert diffs[first]["original_output"]["tool_calls"][0]["name"] == "add"
    d = diffs[tool]
    assert (d["reexecuted"], d["mutated_output"]) == (False, None)
    assert d["reason"].startswith("a tool span is not re-executed")
    assert d["mutated_input"] == {**d["original_input"], "temperature": 0.1}

    # The re-run is a new trace in the same project, linked to the original.
    result = (await loop.client.get(f"/v1/traces/replay-{replay_id}")).json()
    assert result["metadata"]["replay_of"] == turn_id and result["metadata"]["replay_id"] == replay_id
    assert result["project_id"] == original["project_id"]
    spans = {s["span_id"]: s for s in result["spans"]}
    assert set(spans) == {s["span_id"] for s in original["spans"]}
    assert spans[answer]["output"] == {"role": "assistant", "content": "Five, says the other model."}
    assert spans[answer]["model"] == "sim-other" and spans[answer]["output_tokens"] > 0
    assert spans[first]["model"] == "sim-echo"
    originals = {s["span_id"]: s for s in original["spans"]}
    # Tool and unmutated spans keep what was recorded; the tool did not run again.
    assert spans[tool]["output"] == originals[tool]["output"] and spans[tool]["output"]["status"] == "success"
    assert spans[turn_id]["output"] == originals[turn_id]["output"]
    assert [e.type for e in await loop.stored(base)] == [e.type for e in stored]
    # The original is untouched.
    again = (await loop.client.get(f"/v1/traces/{turn_id}")).json()
    assert again["spans"] == original["spans"]

    run = (await loop.client.get(f"/v1/traces/{turn_id}/replay/{replay_id}")).json()
    assert (run["id"], run["status"], run["kind"]) == (replay_id, "completed", "mutations")
    assert run["result_trace_id"] == f"replay-{replay_id}" and run["config"] == {"mutations": mutations}
    assert run["completed_at"] is not None and run["error"] is None and run["created_by"]
    diff = (await loop.client.get(f"/v1/traces/{turn_id}/replay/{replay_id}/diff")).json()
    assert diff["diffs"] == body["diffs"] and diff["mutations"] == mutations

    # The run's history replays with today's code; saved, it keeps doing so in CI
    # (tests/workflows/test_stack_check.py replays every saved history).
    history = await loop.temporal.get_workflow_handle(ReplayLoop.workflow_id(replay_id)).fetch_history()
    replayed = await replay(history, WORKFLOWS)
    assert replayed.replay_failure is None
    if os.environ.get("EVERLOOP_RECORD_HISTORIES"):
        (HISTORIES / "replay_mutations.json").write_text(history.to_json())


async def _ingest(client: httpx.AsyncClient, trace_id: str, spans: list[dict[str, Any]]) -> None:
    # A minute ago, not a fixed date: the test reads the last day's analytics, which a fixed date
    # falls out of a day later.
    start = datetime.now(UTC) - timedelta(minutes=1)

    def at(seconds: int) -> str:
        return (start + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    batch = [
        {"trace_id": trace_id, "status": "ok", "start_time": at(i), "end_time": at(i + 1), **span}
        for i, span in enumerate(spans)
    ]
    response = await client.post("/v1/traces", json={"trace_name": "pipeline", "spans": batch})
    assert response.status_code == 201, response.text


async def test_an_ingested_trace_is_re_executed_where_it_can_be_and_diffed_on_input_elsewhere(
    loop: Loop,
) -> None:
    provider = await factories.provider(loop.client, base_url=loop.simulator_url)
    await _model(loop, provider["id"], "sim-echo", {})
    hello = {"messages": [{"role": "user", "content": "hello there"}]}
    await _ingest(
        loop.client,
        "t-ingested",
        [
            {
                "span_id": "chat",
                "name": "llm-call",
                "kind": "llm",
                "model": "sim-echo",
                "input": hello,
                "output": {"content": "Hi!"},
            },
            {
                "span_id": "prompt-only",
                "name": "complete",
                "kind": "llm",
                "model": "sim-echo",
                "input": {"prompt": "hello"},
                "output": "Hi",
            },
            {"span_id": "elsewhere", "name": "llm-call", "kind": "llm", "model": "gpt-4o", "input": hello},
            {"span_id": "search", "name": "search", "kind": "tool", "input": {"q": "x"}, "output": [1]},
        ],
    )
    mutations = {
        "chat": {"temperature": 0.5, "system_prompt": "Be terse."},
        "prompt-only": {"temperature": 0.5},
        "elsewhere": {"max_tokens": 10},
        "search": {"model": "gpt-4-turbo"},
    }
    body = await _replay(loop.client, "t-ingested", mutations)
    diffs = {d["span_id"]: d for d in body["diffs"]}
    chat = diffs["chat"]
    # The recorded model, by its name among the caller's models; the echo model says what it read.
    assert chat["reexecuted"] and chat["mutated_output"]["content"] == "Echo: hello there"
    assert chat["original_output"] == {"content": "Hi!"}
    assert chat["mutated_input"] == {**hello, "temperature": 0.5, "system_prompt": "Be terse."}
    assert (diffs["prompt-only"]["reexecuted"], diffs["prompt-only"]["reason"]) == (False, NO_MESSAGES)
    assert diffs["prompt-only"]["mutated_input"] == {"prompt": "hello", "temperature": 0.5}
    assert "'gpt-4o' is none of the models you may use" in diffs["elsewhere"]["reason"]
    assert diffs["search"]["reason"].startswith("a tool span is not re-executed")
    assert all(d["mutated_output"] is None for k, d in diffs.items() if k != "chat")
    assert body["status"] == "completed"

    result = (await loop.client.get(f"/v1/traces/{body['result_trace_id']}")).json()
    spans = {s["span_id"]: s for s in result["spans"]}
    assert spans["chat"]["output"]["content"] == "Echo: hello there"
    assert spans["prompt-only"]["output"] == "Hi" and spans["search"]["output"] == [1]
    assert result["metadata"]["replay_of"] == "t-ingested"

    # The re-run is not traffic: analytics and drift count the original's trace and calls once.
    usage = (await loop.client.get("/v1/analytics/usage", params={"period": "1d"})).json()
    assert usage["total_traces"] == 1, usage
    assert {m["model"]: m["calls"] for m in usage["top_models"]} == {"sim-echo": 2, "gpt-4o": 1}
    day = datetime.now(UTC) - timedelta(minutes=30)  # a window around the ingested spans
    async with loop.db.session() as s:
        rows = (
            await s.execute(
                text(drift.CALLS),
                {
                    "owner": BUILTIN_ADMIN_ID,
                    "baseline_start": day - timedelta(days=1),
                    "window_start": day,
                    "window_end": day + timedelta(hours=1),
                    "cap": 100,
                },
            )
        ).all()
    assert sum(r.calls for r in rows) == 3, rows

    # A retried step that finds its answer stored does not call the model again.
    redis = bus.connect(loop.endpoints.redis_url)
    try:
        activities = ReplayActivities(LoopDeps(db=loop.db, bus=redis, settings=loop.settings, secrets=None))
        params = ReplaySpanInput(replay_id=body["replay_run_id"], span_id="chat")
        again = await ActivityEnvironment().run(activities.run_span, params)
    finally:
        await redis.aclose()
    assert again.found_stored


async def test_a_mutated_model_the_caller_does_not_have_is_an_input_only_diff(loop: Loop) -> None:
    await _ingest(
        loop.client,
        "t-no-model",
        [
            {
                "span_id": "chat",
                "name": "llm-call",
                "kind": "llm",
                "model": "gpt-4o",
                "input": [{"role": "user", "content": "hi"}],
            }
        ],
    )
    body = await _replay(loop.client, "t-no-model", {"chat": {"model": "gpt-4-turbo"}})
    (diff,) = body["diffs"]
    assert not diff["reexecuted"] and "'gpt-4-turbo'" in diff["reason"]
    assert diff["mutated_input"] == {"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4-turbo"}
    assert body["status"] == "completed"
    assert HISTORY_GONE not in diff["reason"]


async def test_an_image_url_on_an_inside_address_is_not_sent(loop: Loop) -> None:
    provider = await factories.provider(loop.client, base_url=loop.simulator_url)
    await _model(loop, provider["id"], "sim-echo", {})
    await _ingest(
        loop.client,
        "t-image",
        [
            {
                "span_id": "chat",
                "name": "llm-call",
                "kind": "llm",
                "model": "sim-echo",
                "input": [{"role": "user", "content": "hi"}],
            }
        ],
    )
    inside = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/secret.png"}},
    ]
    body = await _replay(
        loop.client, "t-image", {"chat": {"messages": [{"role": "user", "content": inside}]}}
    )
    (diff,) = body["diffs"]
    assert body["status"] == "failed" and "span chat: an image URL" in body["error"]
    assert not diff["reexecuted"] and diff["mutated_output"] is None
    assert "loopback" in diff["reason"] and diff["reason"].startswith("the re-executed call failed: ")


async def test_a_worker_killed_during_the_model_call_loses_nothing(
    endpoints: Endpoints,
    db: Database,
    simulator_url: str,
    task_queue: str,
    temporal_client: Client,
    workers: Workers,
) -> None:
    # Two workers from the start (booting one takes seconds): the one running the call is killed,
    # the other takes the retry.
    started = {w.pid: w for w in (workers.start(), workers.start())}
    words = " ".join(f"w{i}" for i in range(60))
    # The POST answers at once (`running`); the run goes on in the workers.
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue, REPLAY_WAIT_S="0")
    with running(app_for(settings, configure_logs=False)) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            provider = await factories.provider(client, base_url=simulator_url)
            slow = {"mode": "fixed", "text": words, "chunk_delay": 0.05}
            await factories.model(client, provider["id"], model_id="sim-slow", settings=slow)
            await _ingest(
                client,
                "t-slow",
                [
                    {
                        "span_id": "chat",
                        "name": "llm-call",
                        "kind": "llm",
                        "model": "sim-slow",
                        "input": {"messages": [{"role": "user", "content": "speak"}]},
                    }
                ],
            )
            body = await _replay(client, "t-slow", {"chat": {"temperature": 0.9}})
            assert body["status"] in ("pending", "running")
            assert body["diffs"][0]["mutated_output"] is None and body["diffs"][0]["reason"] is None
            replay_id = body["replay_run_id"]
            handle = temporal_client.get_workflow_handle(ReplayLoop.workflow_id(replay_id))

            async def call_in_flight() -> int:
                """The pid of the worker whose attempt is calling the model (its identity: pid@host)."""
                while True:
                    pending = (await handle.describe()).raw_description.pending_activities
                    for a in pending:
                        if (
                            a.activity_type.name == ReplayLoop.RUN_SPAN
                            and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                        ):
                            return int(a.last_worker_identity.split("@")[0])
                    await asyncio.sleep(0.1)

            calling = await asyncio.wait_for(call_in_flight(), 150)  # workers take seconds to boot
            workers.kill(started[calling])  # mid-stream, no chance to clean up
            # The heartbeat timeout tells Temporal the attempt is dead; another worker calls again.
            outcome = await asyncio.wait_for(handle.result(), 90)
            assert outcome["status"] == "completed"
            diff = (await client.get(f"/v1/traces/t-slow/replay/{replay_id}/diff")).json()
            run = (await client.get(f"/v1/traces/t-slow/replay/{replay_id}")).json()
    assert diff["status"] == run["status"] == "completed"
    assert diff["diffs"][0]["mutated_output"]["content"] == words and diff["diffs"][0]["reexecuted"]
    history = await handle.fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert max(attempts) == 2  # the killed attempt and the one that completed
    async with db.session() as s:
        replay = await s.get(Replay, uuid.UUID(replay_id))
        assert replay is not None and replay.current_step == 1  # the answer was stored once
        assert list(replay.result["outputs"]) == ["chat"]
        events = await s.scalar(select(func.count()).select_from(Event))
    assert events == 0  # a replay writes no session events


async def _pending(loop: Loop, trace_id: str, mutations: dict[str, Any]) -> uuid.UUID:
    """A run stored as the POST stores it, whose workflow was never started (the API died)."""
    async with loop.db.session() as s:
        replay = await replays.create(s, BUILTIN_ADMIN, trace_id, ReplayRequest(mutations=mutations))
        return replay.id


async def _echo_trace(loop: Loop, trace_id: str, spans: int = 1) -> None:
    provider = await factories.provider(loop.client, base_url=loop.simulator_url)
    await _model(loop, provider["id"], "sim-echo", {})
    chat = {"name": "llm-call", "kind": "llm", "model": "sim-echo"}
    await _ingest(
        loop.client,
        trace_id,
        [
            {**chat, "span_id": f"chat{i}", "input": [{"role": "user", "content": f"hi {i}"}]}
            for i in range(spans)
        ],
    )


async def test_a_run_left_pending_is_started_by_the_sweeper(loop: Loop) -> None:
    await _echo_trace(loop, "t-pending")
    replay_id = await _pending(loop, "t-pending", {"chat0": {"temperature": 0.5}})
    queue = loop.settings.temporal_task_queue
    assert await sweeper.start_pending_replays(loop.db, loop.temporal, queue, grace=timedelta(0)) == 1
    # A second sweep finds its workflow there (or the run taken): nothing starts twice.
    assert await sweeper.start_pending_replays(loop.db, loop.temporal, queue, grace=timedelta(0)) == 0
    handle = loop.temporal.get_workflow_handle(ReplayLoop.workflow_id(replay_id))
    outcome = await asyncio.wait_for(handle.result(), 30)
    assert outcome["status"] == "completed"
    diff = (await loop.client.get(f"/v1/traces/t-pending/replay/{replay_id}/diff")).json()
    assert diff["diffs"][0]["mutated_output"]["content"] == "Echo: hi 0"
    # A recent run is left to its POST (the grace).
    await _pending(loop, "t-pending", {"chat0": {"temperature": 0.7}})
    assert await sweeper.start_pending_replays(loop.db, loop.temporal, queue) == 0


async def test_a_run_failed_as_unstarted_spends_nothing_if_its_workflow_started_after_all(loop: Loop) -> None:
    """The API failed the run (Temporal could not say whether the start went through) and told the
    client to send again; the workflow Temporal had taken then plans nothing: no call, no trace."""
    await _echo_trace(loop, "t-unstarted")
    replay_id = await _pending(loop, "t-unstarted", {"chat0": {"temperature": 0.5}})
    async with loop.db.session() as s:
        assert await replays.settle_unstarted(s, None, replay_id)
    handle = await replays.start(loop.temporal, loop.settings.temporal_task_queue, replay_id)
    outcome = await asyncio.wait_for(handle.result(), 30)
    assert outcome == {"status": "failed", "result_trace_id": None}
    async with loop.db.session() as s:
        replay = await s.get(Replay, replay_id)
        assert replay is not None and replay.status == "failed" and replay.error == replays.UNSTARTED
        assert replay.result["outputs"] == {} and replay.current_step == 0


async def test_spans_are_re_executed_a_few_at_a_time(loop: Loop) -> None:
    spans = SPANS_AT_ONCE + 3
    await _echo_trace(loop, "t-many", spans)
    body = await _replay(loop.client, "t-many", {f"chat{i}": {"temperature": 0.1} for i in range(spans)})
    assert body["status"] == "completed" and all(d["reexecuted"] for d in body["diffs"])
    history = await loop.temporal.get_workflow_handle(
        ReplayLoop.workflow_id(body["replay_run_id"])
    ).fetch_history()
    in_flight: set[int] = set()  # the span calls scheduled and not yet done, by their event id
    most = 0
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == ReplayLoop.RUN_SPAN:
                in_flight.add(event.event_id)
                most = max(most, len(in_flight))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            in_flight.discard(event.activity_task_completed_event_attributes.scheduled_event_id)
    assert most == SPANS_AT_ONCE


async def test_recorded_parts_that_are_not_text_or_images_are_not_sent(loop: Loop) -> None:
    provider = await factories.provider(loop.client, base_url=loop.simulator_url)
    await _model(loop, provider["id"], "sim-echo", {})
    recorded = {
        "role": "user",
        "content": [
            {"type": "text", "text": "hello"},
            {"type": "file", "file": {"file_data": "http://169.254.169.254/latest/meta-data/"}},
            {"type": "input_audio", "input_audio": {"data": "aGk=", "format": "wav"}},
            {"type": "document", "source": {"type": "url", "url": "http://10.0.0.1/x.pdf"}},
        ],
        "audio": {"url": "http://10.0.0.1/a.wav"},
    }
    await _ingest(
        loop.client,
        "t-parts",
        [{"span_id": "chat", "name": "llm-call", "kind": "llm", "model": "sim-echo", "input": [recorded]}],
    )
    replay_id = await _pending(loop, "t-parts", {"chat": {"temperature": 0.5}})
    async with loop.db.session() as s:
        call = await replays.prepare_call(s, replay_id, "chat")
    assert call is not None
    assert call.messages == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
