"""Opswald's replays (forks): a recorded five-step turn (reason, tool, reason, tool, reason) forked
at a step and run again by the real agent loop in a new session. A counting MCP tool proves which
steps ran again: never one before the fork."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.db.models import Message
from core.identity import BUILTIN_ADMIN
from core.schemas.replays import StartReplay
from everloop import sweeper
from everloop.worker import WORKFLOWS
from services import forks
from tests import factories
from tests.loop.conftest import Loop
from tests.mcp_server import COUNTS, serve_http
from tests.replaying import replay as replay_history

HISTORIES = Path(__file__).resolve().parents[1] / "workflows" / "histories"
ANSWER = "Counted twice."
FORKED = "Forked: counted."


def script(label: str, final: str) -> dict[str, Any]:
    call = {"tool_calls": [{"name": "count", "arguments": {"label": label}}]}
    return {"mode": "script", "script": [call, call, final]}


class Turn:
    """A recorded five-step turn: its session, trace id and the models' ids."""

    def __init__(self, loop: Loop, base: str, trace_id: str, other_model: dict[str, Any]) -> None:
        self.loop = loop
        self.base = base
        self.trace_id = trace_id
        self.other_model = other_model


@contextmanager
def counting_server() -> Iterator[str]:
    with serve_http() as (url, _):
        yield url


async def record(loop: Loop, url: str, label: str) -> Turn:
    response = await loop.client.post(
        "/v1/mcp-servers", json={"name": "counter", "transport": "streamable_http", "url": url}
    )
    assert response.status_code == 201, response.text
    server = response.json()
    base = await loop.chat(simulator=script(label, ANSWER), capabilities=[server["capability_id"]])
    provider = await factories.provider(loop.client, base_url=loop.simulator_url, name="Other")
    other = await factories.model(
        loop.client, provider["id"], model_id="sim-2", settings=script(label, FORKED)
    )
    frames = await loop.send(base, "count twice")
    assert frames[-1]["type"] == "turn.completed", frames[-1]
    assert COUNTS[label] == 2
    trace_id = frames[-1]["context"]["turn_id"]
    trace = (await loop.client.get(f"/v1/traces/{trace_id}")).json()
    assert [s["type"] for s in trace["steps"]] == [
        "llm_call",
        "tool_call",
        "llm_call",
        "tool_call",
        "llm_call",
    ]
    return Turn(loop, base, trace_id, other)


async def start(loop: Loop, body: dict[str, Any]) -> dict[str, Any]:
    response = await loop.client.post("/v1/replays", json=body)
    assert response.status_code == 201, response.text
    started: dict[str, Any] = response.json()
    return started


async def finished(loop: Loop, started: dict[str, Any]) -> dict[str, Any]:
    """The replay once its fork's workflow has returned (the fork's run ends with its turn)."""
    handle = loop.temporal.get_workflow_handle(f"session-{started['session_id']}")
    await asyncio.wait_for(handle.result(), 60)
    replay: dict[str, Any] = (await loop.client.get(f"/v1/replays/{started['replay_id']}")).json()
    return replay


async def until(
    loop: Loop, replay_id: str, ready: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    """Polls the replay until `ready` (a gate's hold is workflow state with no event of its own;
    the poll is bounded and stops as soon as it holds)."""

    async def poll() -> dict[str, Any]:
        while True:
            replay: dict[str, Any] = (await loop.client.get(f"/v1/replays/{replay_id}")).json()
            if ready(replay):
                return replay
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(poll(), timeout)


async def control(loop: Loop, replay_id: str, action: str, step: int | None = None) -> Any:
    body: dict[str, Any] = {"action": action} | ({"step": step} if step is not None else {})
    return await loop.client.post(f"/v1/replays/{replay_id}/control", json=body)


async def test_a_fork_from_step_3_reruns_from_there_with_the_modified_model(loop: Loop) -> None:
    label = f"fork-{uuid.uuid4()}"
    with counting_server() as url:
        turn = await record(loop, url, label)
        before = await loop.messages(turn.base)
        started = await start(
            loop,
            {
                "trace_id": turn.trace_id,
                "mode": "auto",
                "modifications": {"model": "sim-2", "temperature": 0.0},
                "fork_from_step": 3,
            },
        )
        assert started["status"] == "running" and started["mode"] == "auto"
        assert started["url"].endswith(f"/v1/replays/{started['replay_id']}")
        replay = await finished(loop, started)

    # Step 2's tool was taken from the recording; only step 4's ran again.
    assert COUNTS[label] == 3
    assert replay["status"] == "completed", replay
    assert replay["current_step"] == replay["total_steps"] == 5
    result = replay["result"]
    assert result["final_output"] == FORKED
    assert result["outcome"] == "completed"
    changes = {(c["step"], c["field"]): c for c in result["changes_from_original"]}
    assert changes[(3, "model")]["original"] == "sim-1" and changes[(3, "model")]["modified"] == "sim-2"
    assert changes[(3, "temperature")]["modified"] == 0.0
    assert changes[(5, "output")]["original"] == ANSWER and changes[(5, "output")]["modified"] == FORKED
    # Step 4's tool ran again (the counter's third run); step 2 is before the fork: not compared.
    assert '"result": 2' in str(changes[(4, "output")]["original"])
    assert '"result": 3' in str(changes[(4, "output")]["modified"])
    assert all(step >= 3 for step, _ in changes)

    # The original session is untouched; the fork holds its history up to step 3, then its own.
    assert await loop.messages(turn.base) == before
    fork_base = f"/v1/sessions/{started['session_id']}"
    forked = await loop.messages(fork_base)
    assert [m["role"] for m in forked] == ["user", "agent", "tool_result", "agent", "tool_result", "agent"]
    assert forked[0]["content"] == before[0]["content"] and forked[1]["content"] == before[1]["content"]
    assert forked[-1]["content"][0]["text"] == FORKED

    # Its turn is a trace of its own, linked to the original; its steps are the fork's (3 to 5).
    trace = (await loop.client.get(f"/v1/traces/{replay['result_trace_id']}")).json()
    assert trace["metadata"]["replay_of"] == turn.trace_id
    assert [s["model"] for s in trace["steps"] if s["type"] == "llm_call"] == ["sim-2", "sim-2"]
    listed = (await loop.client.get("/v1/replays", params={"trace_id": turn.trace_id})).json()
    assert [r["replay_id"] for r in listed["replays"]] == [started["replay_id"]] and listed["total"] == 1

    # Its events went out like any session's: the fork's turn, from its opening to its end.
    stored = [e.type for e in await loop.stored(f"/x/{started['session_id']}")]
    assert stored.count("turn.started") == stored.count("turn.completed") == 1
    assert stored.count("tool.call_completed") == 1


async def test_an_interactive_fork_steps_jumps_and_stops(loop: Loop) -> None:
    label = f"interactive-{uuid.uuid4()}"
    with counting_server() as url:
        turn = await record(loop, url, label)
        started = await start(loop, {"trace_id": turn.trace_id, "mode": "interactive"})
        replay_id = started["replay_id"]
        assert started["status"] == "paused"
        held = await until(loop, replay_id, lambda r: r["holding_at"] == 1)
        assert held["status"] == "paused" and held["current_step"] == 0

        # step: one reasoning step, then it holds before the tool call.
        stepped = await control(loop, replay_id, "step")
        assert stepped.status_code == 200, stepped.text
        await until(loop, replay_id, lambda r: r["holding_at"] == 2)
        assert COUNTS[label] == 2  # the tool has not run again yet
        assert (await control(loop, replay_id, "step")).status_code == 200
        await until(loop, replay_id, lambda r: r["holding_at"] == 3)
        assert COUNTS[label] == 3

        # jump: runs on to step 5 and holds before it (steps 3 and 4 run).
        assert (await control(loop, replay_id, "jump", 5)).status_code == 200
        at_5 = await until(loop, replay_id, lambda r: r["holding_at"] == 5)
        assert at_5["current_step"] == 4 and COUNTS[label] == 4

        # A step that has run cannot be jumped to or paused at: 409, and nothing changes.
        back = await control(loop, replay_id, "jump", 2)
        assert back.status_code == 409 and "already run" in back.json()["error"]
        assert (await control(loop, replay_id, "pause", 3)).status_code == 409
        assert (await control(loop, replay_id, "jump")).status_code == 400

        stopped = await control(loop, replay_id, "stop")
        assert stopped.status_code == 200, stopped.text
        replay = await finished(loop, started)
    assert replay["status"] == "stopped" and replay["result"]["outcome"] == "cancelled"
    assert replay["result"]["final_output"] is None  # its replies so far were tool calls, no text
    assert replay["current_step"] == 4 and COUNTS[label] == 4
    assert (await control(loop, replay_id, "play")).status_code == 409
    # The fork's turn ended cancelled: its session says so, and the last reasoning step never ran.
    stored = [e.type for e in await loop.stored(f"/x/{started['session_id']}")]
    assert stored.count("turn.cancelled") == 1 and stored.count("llm.generation") == 2

    # The run's history (gate waits, controls, the stop) replays with today's code; saved, it keeps
    # doing so in CI (tests/workflows/test_stack_check.py replays every saved history).
    handle = loop.temporal.get_workflow_handle(f"session-{started['session_id']}")
    history = await handle.fetch_history()
    replayed = await replay_history(history, WORKFLOWS)
    assert replayed.replay_failure is None
    if os.environ.get("EVERLOOP_RECORD_HISTORIES"):
        (HISTORIES / "session_interactive_fork.json").write_text(history.to_json())


async def test_pause_at_a_step_then_play_to_the_end(loop: Loop) -> None:
    label = f"pause-{uuid.uuid4()}"
    with counting_server() as url:
        turn = await record(loop, url, label)
        started = await start(loop, {"trace_id": turn.trace_id, "mode": "interactive", "fork_from_step": 3})
        replay_id = started["replay_id"]
        await until(loop, replay_id, lambda r: r["holding_at"] == 3 and r["current_step"] == 2)
        paused = await control(loop, replay_id, "pause", 5)
        assert paused.status_code == 200
        assert (await control(loop, replay_id, "play")).status_code == 200
        replay = await finished(loop, started)
    assert replay["status"] == "completed" and replay["result"]["final_output"] == ANSWER
    assert COUNTS[label] == 3
    # The same model and parameters: the only change is the counter's answer (its third run).
    [change] = replay["result"]["changes_from_original"]
    assert change["step"] == 4 and change["field"] == "output"
    assert '"result": 2' in str(change["original"]) and '"result": 3' in str(change["modified"])


async def test_bad_forks_are_refused_naming_the_field(loop: Loop) -> None:
    label = f"bad-{uuid.uuid4()}"
    with counting_server() as url:
        turn = await record(loop, url, label)

        async def refused(body: dict[str, Any], field: str, status: int = 400) -> None:
            response = await loop.client.post("/v1/replays", json=body)
            assert response.status_code == status, response.text
            assert field in response.text

        await refused({"trace_id": turn.trace_id, "fork_from_step": 2}, "fork_from_step")  # a tool step
        await refused({"trace_id": turn.trace_id, "fork_from_step": 6}, "fork_from_step")
        await refused({"trace_id": turn.trace_id, "fork_from_step": 0}, "fork_from_step")
        await refused({"trace_id": turn.trace_id, "mode": "later"}, "mode")
        await refused({"trace_id": turn.trace_id, "modifications": {"model": "nope"}}, "modifications.model")
        await refused(
            {"trace_id": turn.trace_id, "modifications": {"temperature": 5}}, "modifications.temperature"
        )
        await refused(
            {"trace_id": turn.trace_id, "modifications": {"messages": []}}, "modifications.messages"
        )
        await refused({"trace_id": turn.trace_id, "surprise": 1}, "surprise")
        await refused({"trace_id": "no-such-trace"}, "not found", 404)
        ingested = await loop.client.post(
            "/v1/traces",
            json={"spans": [{"span_id": "s1", "trace_id": "app-trace", "name": "x", "kind": "tool"}]},
        )
        assert ingested.status_code in (200, 201), ingested.text
        await refused({"trace_id": "app-trace"}, "fork_from_step")  # an app's trace without an LLM step
    assert COUNTS[label] == 2
    async with loop.db.session() as s:
        copies = (await s.execute(select(Message).where(Message.metadata_["copied_from"].is_not(None)))).all()
    assert copies == []  # nothing refused left a fork behind


async def test_an_apps_trace_forked_re_executes_its_llm_steps_from_there(loop: Loop) -> None:
    """An app's trace (here 001's): its code is the app's, so a fork re-executes its LLM steps from
    the fork step on with the modifications, and keeps every other step as recorded."""
    provider = await factories.provider(loop.client, base_url=loop.simulator_url)
    await factories.model(loop.client, provider["id"], model_id="sim-recorded", settings={})
    await factories.model(
        loop.client, provider["id"], model_id="sim-other", settings={"mode": "fixed", "text": "Other answer."}
    )
    ask = {"messages": [{"role": "user", "content": "plan the trip"}]}
    spans = [
        {
            "span_id": "plan",
            "name": "llm-call",
            "kind": "llm",
            "model": "sim-recorded",
            "input": ask,
            "output": {"content": "First plan."},
        },
        {"span_id": "search", "name": "search", "kind": "tool", "input": {"q": "trains"}, "output": ["t1"]},
        {
            "span_id": "answer",
            "name": "llm-call",
            "kind": "llm",
            "model": "sim-recorded",
            "input": ask,
            "output": {"content": "Take the train."},
        },
    ]
    batch = [
        {
            "trace_id": "app-trip",
            "status": "ok",
            "start_time": f"2026-11-29T12:00:0{i}Z",
            "end_time": f"2026-11-29T12:00:0{i + 1}Z",
            **span,
        }
        for i, span in enumerate(spans)
    ]
    ingested = await loop.client.post("/v1/traces", json={"trace_name": "trip", "spans": batch})
    assert ingested.status_code == 201, ingested.text

    refused = await loop.client.post("/v1/replays", json={"trace_id": "app-trip", "mode": "interactive"})
    assert refused.status_code == 400 and "mode" in refused.text
    started = await start(
        loop, {"trace_id": "app-trip", "modifications": {"model": "sim-other"}, "fork_from_step": 2}
    )
    assert started["session_id"] is None and started["fork_from_step"] == 2
    handle = loop.temporal.get_workflow_handle(f"replay-{started['replay_id']}")
    await asyncio.wait_for(handle.result(), 60)
    replay = (await loop.client.get(f"/v1/replays/{started['replay_id']}")).json()
    assert replay["status"] == "completed" and replay["kind"] == "mutations"
    result = replay["result"]
    assert result["final_output"] == "Other answer."
    # Only step 3 (the LLM step at or after the fork) was re-executed; step 1 kept its recording.
    assert [(c["step"], c["field"]) for c in result["changes_from_original"]] == [(3, "model"), (3, "output")]
    model_change, output_change = result["changes_from_original"]
    assert (model_change["original"], model_change["modified"]) == ("sim-recorded", "sim-other")
    assert (output_change["original"], output_change["modified"]) == ("Take the train.", "Other answer.")
    diff = (await loop.client.get(f"/v1/traces/app-trip/replay/{started['replay_id']}/diff")).json()
    assert [d["span_id"] for d in diff["diffs"]] == ["answer"]
    control_refused = await control(loop, started["replay_id"], "pause")
    assert control_refused.status_code == 409


async def test_a_repeated_idempotency_key_answers_the_first_fork(loop: Loop) -> None:
    label = f"twice-{uuid.uuid4()}"
    with counting_server() as url:
        turn = await record(loop, url, label)
        body = {"trace_id": turn.trace_id, "fork_from_step": 3}
        headers = {"Idempotency-Key": f"fork-{label}"}
        # Sent twice at once (a client's retry racing its first try): one fork, run once.
        first, second = await asyncio.gather(
            loop.client.post("/v1/replays", json=body, headers=headers),
            loop.client.post("/v1/replays", json=body, headers=headers),
        )
        assert first.status_code == second.status_code == 201, (first.text, second.text)
        assert first.json()["replay_id"] == second.json()["replay_id"]
        assert sorted(r.headers.get("idempotent-replayed", "no") for r in (first, second)) == ["no", "true"]
        await finished(loop, first.json())
        assert COUNTS[label] == 3  # the keyed fork's step-4 tool ran once
        other = await start(loop, body)  # no key: another fork
        await finished(loop, other)
    assert COUNTS[label] == 4
    assert other["replay_id"] != first.json()["replay_id"]
    listed = (await loop.client.get("/v1/replays", params={"trace_id": turn.trace_id})).json()
    assert listed["total"] == 2


async def test_a_fork_the_api_stored_but_never_started_is_started_by_the_sweeper(loop: Loop) -> None:
    label = f"stranded-{uuid.uuid4()}"
    with counting_server() as url:
        turn = await record(loop, url, label)
        # Stored as the POST stores it; the API "died" before starting its workflow.
        async with loop.db.session() as s:
            fork, _ = await forks.start_replay(
                s, BUILTIN_ADMIN, StartReplay(trace_id=turn.trace_id, fork_from_step=3)
            )
        assert isinstance(fork, forks.Fork)
        # A message to the fork's session before its replay starts would take its workflow: 409.
        early = await loop.client.post(
            f"/v1/sessions/{fork.session_id}/messages", json=factories.text_message("me first")
        )
        assert early.status_code == 409, early.text
        control_early = await control(loop, str(fork.replay.id), "play")
        assert control_early.status_code == 409 and "not started" in control_early.json()["error"]
        queue = loop.settings.temporal_task_queue
        # A recent one is left to its POST (the grace); an older one is started, once.
        assert await sweeper.start_pending_replays(loop.db, loop.temporal, queue) == 0
        assert await sweeper.start_pending_replays(loop.db, loop.temporal, queue, grace=timedelta(0)) == 1
        assert await sweeper.start_pending_replays(loop.db, loop.temporal, queue, grace=timedelta(0)) == 0
        # The copied user messages are never handed to a workflow by the message sweep.
        assert await sweeper.sweep_once(loop.db, loop.temporal, queue, grace=timedelta(0)) == 0
        replay = await finished(loop, {"replay_id": str(fork.replay.id), "session_id": str(fork.session_id)})
    assert replay["status"] == "completed" and replay["result"]["final_output"] == ANSWER
    assert COUNTS[label] == 3


async def test_a_forks_first_step_reads_what_the_original_step_read(loop: Loop) -> None:
    """A second turn forked at its step 3: the fork's model call gets the same conversation as the
    original's step 3 did (the first turn whole, the second's user message, reply and result)."""
    label = f"history-{uuid.uuid4()}"
    with counting_server() as url:
        turn = await record(loop, url, label)
        frames = await loop.send(turn.base, "count twice again")
        assert frames[-1]["type"] == "turn.completed"
        second = frames[-1]["context"]["turn_id"]
        started = await start(loop, {"trace_id": second, "fork_from_step": 3})
        await finished(loop, started)

    def reads(events: list[Any], turn_id: str) -> list[list[str]]:
        """What each of the turn's reasoning steps sent the model (the roles, in order)."""
        return [
            [m["role"] for m in e.data["messages"]]
            for e in events
            if e.type == "llm.generation" and e.context["turn_id"] == turn_id
        ]

    original = reads(await loop.stored(turn.base), second)[1]  # its step 3: the second reasoning step
    fork_events = await loop.stored(f"/x/{started['session_id']}")
    fork_turn = next(e.context["turn_id"] for e in fork_events if e.type == "turn.started")
    assert reads(fork_events, fork_turn)[0] == original
    assert original.count("user") == 2 and len(original) == 9


async def test_a_fork_whose_workflow_was_terminated_while_held_is_failed_by_the_sweeper(loop: Loop) -> None:
    label = f"terminated-{uuid.uuid4()}"
    with counting_server() as url:
        turn = await record(loop, url, label)
        started = await start(loop, {"trace_id": turn.trace_id, "mode": "interactive", "fork_from_step": 3})
        await until(loop, started["replay_id"], lambda r: r["holding_at"] == 3)
        handle = loop.temporal.get_workflow_handle(f"session-{started['session_id']}")
        await handle.terminate("an operator's mistake")
    # The closed workflow still answers queries from its history: the stored status stands.
    held = (await loop.client.get(f"/v1/replays/{started['replay_id']}")).json()
    assert held["status"] == "paused" and held["holding_at"] is None
    async with loop.db.session() as s:
        assert await forks.settle_stranded(s, loop.temporal, idle=timedelta(0)) >= 1
    replay = (await loop.client.get(f"/v1/replays/{started['replay_id']}")).json()
    assert replay["status"] == "failed" and "terminated" in replay["error"]
    assert (await control(loop, started["replay_id"], "play")).status_code == 409
    assert COUNTS[label] == 2
