"""Golden tests end to end (docs/golden_tests.md): real agent turns pinned, then runs that fork each
through the real session workflow with the run's modifications and judge the outcome. The
simulator is every model: the agent's (a fixed reply), another model whose reply differs, an
embeddings model, LLM judges with a fixed verdict."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client
from temporalio.worker import Worker

from core.db import Database
from core.db.models import Replay
from core.identity import BUILTIN_ADMIN
from core.schemas.golden import GoldenCheck, GoldenLoop, GoldenRunRequest
from core.schemas.turns import SessionLoop
from everloop.stack import Endpoints
from everloop.worker import WORKFLOWS
from services import golden
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.loop.conftest import Loop
from tests.replaying import replay
from tests.servers import running
from tests.workers import Workers

HISTORIES = Path(__file__).resolve().parents[1] / "workflows" / "histories"
ANSWER = "Issue resolved successfully"
OTHER = "Sorry, I could not help with that"
JSON_ANSWER = json.dumps({"ticket": {"id": 7, "state": "closed", "notes": ["refund", "apology"]}, "ok": True})


def fixed(text: str, **more: Any) -> dict[str, Any]:
    return {"mode": "fixed", "text": text, **more}


class World:
    """A user's models and recorded turns: `turn` answers ANSWER, `json_turn` JSON_ANSWER."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.provider: dict[str, Any] = {}
        self.turn = ""
        self.json_turn = ""

    async def model(self, model_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        return await factories.model(
            self.loop.client, self.provider["id"], model_id=model_id, settings=settings
        )

    async def record(self, reply: str | dict[str, Any], text: str, **agent_fields: Any) -> str:
        settings = reply if isinstance(reply, dict) else fixed(reply)
        model = await self.model(f"agent-{uuid.uuid4().hex[:8]}", settings)
        agent = await factories.agent(self.loop.client, default_model_id=model["id"], **agent_fields)
        session = await factories.session(self.loop.client, agent["id"])
        frames = await self.loop.send(f"/v1/agents/{agent['id']}/sessions/{session['id']}", text)
        assert frames[-1]["type"] == "turn.completed", frames[-1]
        turn_id: str = frames[-1]["context"]["turn_id"]
        return turn_id

    @classmethod
    async def make(cls, loop: Loop) -> World:
        world = cls(loop)
        world.provider = await factories.provider(loop.client, base_url=loop.simulator_url)
        await world.model("sim-other", fixed(OTHER))
        await world.model("sim-embed", {})
        await world.model("judge-yes", fixed(json.dumps({"pass": True, "reason": "it resolves the issue"})))
        await world.model("judge-no", fixed(json.dumps({"pass": False, "reason": "it never says how"})))
        world.turn = await world.record(ANSWER, "my invoice is wrong")
        world.json_turn = await world.record(JSON_ANSWER, "give me the ticket as JSON")
        return world

    async def pin(self, name: str, expected: dict[str, Any], trace_id: str | None = None) -> str:
        response = await self.loop.client.post(
            "/v1/golden-tests",
            json={
                "trace_id": trace_id or self.turn,
                "name": name,
                "tags": ["e2e"],
                "expected_outcome": expected,
            },
        )
        assert response.status_code == 201, response.text
        test_id: str = response.json()["id"]
        return test_id

    async def run(self, test_ids: list[str], modifications: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"test_ids": test_ids}
        if modifications is not None:
            body["modifications"] = modifications
        response = await self.loop.client.post("/v1/golden-tests/run", json=body)
        assert response.status_code == 201, response.text
        started = response.json()
        assert started["total_tests"] == len(test_ids)
        assert started["url"].endswith(f"/v1/golden-tests/runs/{started['run_id']}")
        # The run's workflow returns once every test is judged and the run is closed.
        handle = self.loop.temporal.get_workflow_handle(f"golden-run-{started['run_id']}")
        await asyncio.wait_for(handle.result(), 120)
        run: dict[str, Any] = (
            await self.loop.client.get(f"/v1/golden-tests/runs/{started['run_id']}")
        ).json()
        assert run["status"] == "completed", run
        return run


def by_name(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in run["results"]}


def check(result: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in result["checks"] if c["check"] == name]
    assert isinstance(found, dict)
    return found


async def test_a_run_without_modifications_passes_and_each_match_passes_and_fails_with_reasons(
    loop: Loop,
) -> None:
    world = await World.make(loop)
    semantic = {"final_message": "the issue is resolved", "embedding_model": "sim-embed"}
    tests: dict[str, dict[str, Any]] = {
        "exact": {"status": "completed", "final_message": ANSWER},
        "contains": {
            "final_message": "resolved",
            "match": "contains",
            "max_cost": 1,
            "max_duration_ms": 60_000,
        },
        "regex": {"final_message": r"^Issue \w+ successfully$", "match": "regex"},
        "semantic": {**semantic, "match": "semantic", "threshold": 0.5},
        "judge-pass": {"judge": {"rubric": "Says the issue is resolved.", "model": "judge-yes"}},
        "contains-fails": {"final_message": "refund", "match": "contains"},
        "regex-fails": {"final_message": r"^\d+$", "match": "regex"},
        "semantic-fails": {**semantic, "match": "semantic", "threshold": 0.95},
        "judge-fails": {"judge": {"rubric": "Explains how.", "model": "judge-no"}},
        "status-fails": {"status": "failed"},
        "tools-fails": {"tools": ["current_time"], "max_cost": 0},
    }
    ids = [await world.pin(name, expected) for name, expected in tests.items()]
    json_tests: dict[str, dict[str, Any]] = {
        "json-subset": {"final_message": {"ticket": {"state": "closed", "notes": ["apology"]}}},
        "json-subset-fails": {"final_message": '{"ticket": {"state": "open"}}'},
    }
    for name, expected in json_tests.items():
        ids.append(await world.pin(name, {**expected, "match": "json_subset"}, world.json_turn))

    run = await world.run(ids)
    results = by_name(run)
    assert [r["name"] for r in run["results"]] == [*tests, *json_tests]  # the run's order
    passing = ["exact", "contains", "regex", "semantic", "judge-pass", "json-subset"]
    assert {n: r["status"] for n, r in results.items() if r["status"] == "passed"} == dict.fromkeys(
        passing, "passed"
    ), {n: (r["status"], r["checks"], r["error"]) for n, r in results.items()}
    assert (run["passed"], run["failed"], run["total_tests"]) == (6, 7, 13)
    exact = results["exact"]
    assert exact["final_output"] == ANSWER and exact["error"] is None
    assert exact["replay_id"] and exact["session_id"] and exact["duration_ms"] is not None
    assert exact["cost"] is not None and exact["diff"] == []  # nothing was modified
    assert [c["check"] for c in exact["checks"]] == ["status", "final_message.exact"]
    assert all(c["passed"] and c["reason"] is None for c in exact["checks"])
    assert check(results["semantic"], "final_message.semantic")["actual"]["similarity"] >= 0.5

    # Each failure says which check failed and why.
    reasons = {n: [c["reason"] for c in r["checks"] if not c["passed"]] for n, r in results.items()}
    assert reasons["contains-fails"] == ["the final message does not contain the expected text"]
    assert reasons["regex-fails"] == ["the final message does not match the pattern '^\\\\d+$'"]
    assert (
        reasons["semantic-fails"][0].startswith("similarity 0.")
        and "below the threshold 0.95" in (reasons["semantic-fails"][0])
    )
    assert reasons["judge-fails"] == ["the judge failed it: it never says how"]
    assert reasons["status-fails"] == ["the forked turn ended completed, not failed"]
    assert reasons["json-subset-fails"] == ['$.ticket.state: expected "open", got "closed"']
    # A turn that called no tool; a simulator model's price is 0, so max_cost 0 passes.
    assert reasons["tools-fails"] == ["the forked turn did not call current_time"]

    # The pinned turns' sessions are untouched: each fork ran in a session of its own.
    forks = {r["session_id"] for r in run["results"]}
    assert len(forks) == 13


async def test_a_modified_model_fails_the_exact_test_with_the_diff(loop: Loop) -> None:
    world = await World.make(loop)
    test_id = await world.pin("support flow", {"status": "completed", "final_message": ANSWER})
    run = await world.run([test_id], {"model": "sim-other", "timeout": 60})
    [result] = run["results"]
    assert result["status"] == "failed" and (run["passed"], run["failed"]) == (0, 1)
    assert result["final_output"] == OTHER
    status, message = result["checks"]
    assert status == {
        "check": "status",
        "passed": True,
        "expected": "completed",
        "actual": "completed",
        "reason": None,
    }
    assert message["check"] == "final_message.exact" and not message["passed"]
    assert message["expected"] == ANSWER and message["actual"] == OTHER
    assert message["reason"] == "the final message is not the expected one"
    # The diff against the recording names the model change.
    assert any(change["field"] == "model" for change in result["diff"]), result["diff"]
    listed = (await loop.client.get("/v1/golden-tests/runs")).json()
    assert run["run_id"] in [r["run_id"] for r in listed["runs"]]


async def test_a_test_whose_trace_was_deleted_is_an_error_and_the_others_still_run(loop: Loop) -> None:
    world = await World.make(loop)
    gone = await world.pin("gone", {"final_message": JSON_ANSWER}, world.json_turn)
    kept = await world.pin("kept", {"final_message": ANSWER})
    deleted = await loop.client.delete(f"/v1/traces/{world.json_turn}")
    assert deleted.status_code == 200, deleted.text
    run = await world.run([gone, kept])
    results = by_name(run)
    assert results["gone"]["status"] == "error" and results["gone"]["checks"] == []
    assert results["gone"]["error"] == f"the pinned trace {world.json_turn!r} was deleted"
    assert results["gone"]["replay_id"] is None
    assert results["kept"]["status"] == "passed"
    assert (run["passed"], run["failed"]) == (1, 1)


async def test_a_turn_over_the_time_limit_is_stopped_and_fails_its_status(loop: Loop) -> None:
    world = await World.make(loop)
    await world.model("sim-slow", fixed("late", first_token_delay=30))
    test_id = await world.pin("quick", {"status": "completed"})
    run = await asyncio.wait_for(world.run([test_id], {"model": "sim-slow", "timeout": 1}), 25)
    [result] = run["results"]
    assert result["status"] == "failed"
    [status] = result["checks"]
    assert status["actual"] == "cancelled"
    assert status["reason"] == (
        "the forked turn ended cancelled, not completed (it was stopped: the run's time limit of 1 s passed)"
    )
    # The run's history (fork, child workflow, timer, stop signal, judge, finish) replays with today's
    # code; saved, it keeps doing so in CI (tests/workflows/test_stack_check.py replays every one).
    handle = loop.temporal.get_workflow_handle(f"golden-run-{run['run_id']}")
    history = await handle.fetch_history()
    await replay(history, WORKFLOWS)
    if os.environ.get("EVERLOOP_RECORD_HISTORIES"):
        (HISTORIES / "golden_run_timeout.json").write_text(history.to_json())


async def test_a_turn_that_calls_its_tools_passes_the_tools_check(loop: Loop) -> None:
    world = await World.make(loop)
    call = {"tool_calls": [{"name": "get_current_time", "arguments": {"timezone": "UTC"}}]}
    turn = await world.record(
        {"mode": "script", "script": [call, "It is noon."]}, "what time is it", capabilities=["current_time"]
    )
    test_id = await world.pin(
        "clock", {"tools": ["get_current_time"], "final_message": "noon", "match": "contains"}, turn
    )
    run = await world.run([test_id])
    [result] = run["results"]
    assert result["status"] == "passed", result
    assert check(result, "tools")["actual"] == ["get_current_time"]


async def test_a_retried_fork_step_finds_its_fork_and_a_retried_judge_keeps_its_verdict(loop: Loop) -> None:
    """The steps as a worker killed after each one's commit would have them run again."""
    world = await World.make(loop)
    test_id = await world.pin("once", {"final_message": ANSWER})
    async with loop.db.session() as s:
        run = await golden.create_run(s, BUILTIN_ADMIN, GoldenRunRequest(test_ids=[test_id]))
        [result_id] = (await golden.plan(s, run.id)).result_ids
    forks = []
    for _ in range(2):
        async with loop.db.session() as s:
            fork = await golden.fork_test(s, run.id, uuid.UUID(result_id))
            assert fork is not None
            forks.append((fork.replay.id, fork.session_id, fork.workflow_input()))
    assert forks[0] == forks[1]
    replay_id, session_id, session_input = forks[0]
    async with loop.db.session() as s:
        made = select(func.count()).select_from(Replay).where(Replay.original_trace_id == world.turn)
        assert await s.scalar(made) == 1
        # Taken by the run (whose workflow starts it): the sweeper starts only `pending` forks.
        assert await s.scalar(select(Replay.status).where(Replay.id == replay_id)) == "running"
    # The fork's turn, as the run's child workflow runs it.
    await loop.temporal.execute_workflow(
        SessionLoop.WORKFLOW,
        session_input,
        id=SessionLoop.workflow_id(session_id),
        task_queue=loop.settings.temporal_task_queue,
    )
    result = uuid.UUID(result_id)
    async with loop.db.session() as s:
        work = await golden.judge_work(s, run.id, result, None)
        assert work is not None and (work.final_output, work.outcome) == (ANSWER, "completed")
        assert await golden.store_verdict(s, run.id, result, work, [GoldenCheck(check="x", passed=True)]) == (
            "passed"
        )
    async with loop.db.session() as s:
        # A judge retried after it stored (or racing it): the first verdict is kept.
        failing = [GoldenCheck(check="x", passed=False)]
        assert await golden.store_verdict(s, run.id, result, work, failing) == "passed"
        assert await golden.judge_work(s, run.id, result, None) is None  # nothing left to judge
    async with loop.db.session() as s:
        finished = await golden.finish(s, run.id)
        assert (finished.status, finished.passed, finished.failed) == ("completed", 1, 0)
        assert (await golden.finish(s, run.id)) == finished
    stored = (await loop.client.get(f"/v1/golden-tests/runs/{run.id}")).json()
    assert stored["results"][0]["replay_id"] == str(replay_id)
    assert stored["results"][0]["checks"] == [
        {"check": "x", "passed": True, "expected": None, "actual": None, "reason": None}
    ]


async def test_a_run_stored_and_never_started_is_started_by_start_pending(loop: Loop) -> None:
    """The API died between storing the run and starting it: `golden.start_pending` (the sweeper's
    part) starts it, once."""
    world = await World.make(loop)
    test_id = await world.pin("stranded", {"final_message": ANSWER})
    async with loop.db.session() as s:
        run = await golden.create_run(s, BUILTIN_ADMIN, GoldenRunRequest(test_ids=[test_id]))
    queue, day = loop.settings.temporal_task_queue, timedelta(days=1)
    handle = loop.temporal.get_workflow_handle(f"golden-run-{run.id}")
    async with loop.db.session() as s:
        # Not before its grace; then started (another test's stranded runs may be too: at least one).
        await golden.start_pending(s, loop.temporal, queue, timedelta(hours=1), day)
        assert not await golden.workflow_exists(loop.temporal, run.id)
        assert await golden.start_pending(s, loop.temporal, queue, timedelta(0), day) >= 1
    await asyncio.wait_for(handle.result(), 60)
    first = (await handle.describe()).run_id
    async with loop.db.session() as s:
        await golden.start_pending(s, loop.temporal, queue, timedelta(0), day)
    assert (await handle.describe()).run_id == first  # no longer pending: not started again
    stored = (await loop.client.get(f"/v1/golden-tests/runs/{run.id}")).json()
    assert (stored["status"], stored["passed"]) == ("completed", 1)


async def test_a_worker_killed_while_judging_loses_nothing(
    endpoints: Endpoints,
    db: Database,
    simulator_url: str,
    task_queue: str,
    temporal_client: Client,
    workers: Workers,
) -> None:
    """Worker processes: the one running the LLM judge's call is killed mid-stream; the other takes
    the retry, the run completes, and the verdict is stored once."""
    started = {w.pid: w for w in (workers.start(), workers.start())}
    reason = " ".join(f"w{i}" for i in range(60))
    slow_judge = fixed(json.dumps({"pass": True, "reason": reason}), chunk_delay=0.05)
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    with running(app_for(settings, configure_logs=False)) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            provider = await factories.provider(client, base_url=simulator_url)
            model = await factories.model(
                client, provider["id"], model_id="sim-agent", settings=fixed(ANSWER)
            )
            await factories.model(client, provider["id"], model_id="judge-slow", settings=slow_judge)
            agent = await factories.agent(client, default_model_id=model["id"])
            session = await factories.session(client, agent["id"])
            # Only the client is used: the turn runs in the worker processes.
            loop = Loop(client, db, endpoints, settings, temporal_client, simulator_url, cast(Worker, None))
            frames = await loop.send(f"/v1/agents/{agent['id']}/sessions/{session['id']}", "hi", timeout=150)
            turn = frames[-1]["context"]["turn_id"]
            expected = {"final_message": ANSWER, "judge": {"rubric": "Resolves it.", "model": "judge-slow"}}
            test = await client.post(
                "/v1/golden-tests", json={"trace_id": turn, "name": "killed", "expected_outcome": expected}
            )
            assert test.status_code == 201, test.text
            run = await client.post("/v1/golden-tests/run", json={"test_ids": [test.json()["id"]]})
            assert run.status_code == 201, run.text
            run_id = run.json()["run_id"]
            handle = temporal_client.get_workflow_handle(f"golden-run-{run_id}")

            async def judging() -> int:
                """The pid of the worker whose attempt is judging (its identity: pid@host)."""
                while True:
                    for a in (await handle.describe()).raw_description.pending_activities:
                        if (
                            a.activity_type.name == GoldenLoop.JUDGE
                            and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                        ):
                            return int(a.last_worker_identity.split("@")[0])
                    await asyncio.sleep(0.1)

            workers.kill(started[await asyncio.wait_for(judging(), 60)])  # mid-stream
            # The heartbeat timeout tells Temporal the attempt is dead; the other worker judges again.
            await asyncio.wait_for(handle.result(), 90)
            stored = (await client.get(f"/v1/golden-tests/runs/{run_id}")).json()
    assert (stored["status"], stored["passed"], stored["failed"]) == ("completed", 1, 0)
    [result] = stored["results"]
    assert [c["check"] for c in result["checks"]] == ["final_message.exact", "judge"]
    assert check(result, "judge")["actual"] == {"pass": True, "reason": reason}
    history = await handle.fetch_history()
    judge_attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.attempt > 1
    ]
    assert judge_attempts == [2]  # the killed attempt and the one that judged
    async with db.session() as s:
        forked = select(func.count()).select_from(Replay).where(Replay.original_trace_id == turn)
        assert await s.scalar(forked) == 1  # forked once
