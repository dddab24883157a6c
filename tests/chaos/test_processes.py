"""Redis killed mid-turn, and workers killed while a tool runs, also while PostgreSQL is away."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.api.enums.v1 import PendingActivityState

from tests.chaos.conftest import Stack
from tests.chaos.test_postgres import STREAM_S, script, words
from tests.mcp_server import SLOW_RUNS

pytestmark = pytest.mark.chaos


async def tool_running(label: str) -> None:
    """Waits until the MCP server runs the `slow` call labelled `label`."""
    async with asyncio.timeout(60):
        while "started" not in SLOW_RUNS.get(label, []):
            await asyncio.sleep(0.05)


async def test_redis_killed_during_a_turn(stack: Stack) -> None:
    stack.workers.start()
    base = await stack.chat({"mode": "fixed", "text": words(200), "chunk_delay": STREAM_S})
    await stack.post(base, "talk")
    await stack.until(base, "reason.started")
    await asyncio.to_thread(stack.redis.stop)
    # Without Redis the turn goes on and stores everything; readers poll PostgreSQL meanwhile.
    await stack.until(base, "turn.completed")
    await asyncio.to_thread(stack.redis.start)
    await stack.post(base, "again")  # and with Redis back, the next turn streams live
    await stack.check_turns(base, stack.watchers[0], turns=2)


async def test_a_worker_killed_while_a_tool_runs(stack: Stack) -> None:
    first = stack.workers.start()
    label = uuid.uuid4().hex
    base = await stack.chat(
        script(
            {"tool_calls": [{"name": "slow", "arguments": {"label": label, "seconds": 5}}]},
            "Done.",
            chunk_delay=0,
        ),
        tools=True,
    )
    await stack.post(base, "run the slow tool")
    await tool_running(label)
    stack.workers.kill(first)
    stack.workers.start()
    # The heartbeat timeout tells Temporal the attempt died; the next one runs the call again
    # (it never finished: at least once) and its result is stored once.
    await stack.check_turns(base, stack.watchers[0], turns=1)
    assert SLOW_RUNS[label].count("started") == 2


async def test_a_finished_tool_result_outlives_its_worker_while_postgres_is_away(stack: Stack) -> None:
    first = stack.workers.start()
    label = uuid.uuid4().hex
    base = await stack.chat(
        script(
            {"tool_calls": [{"name": "slow", "arguments": {"label": label, "seconds": 3}}]},
            "Done.",
            chunk_delay=0,
        ),
        tools=True,
    )
    await stack.post(base, "run the slow tool")
    await tool_running(label)
    session_id = base.rsplit("/", 1)[1]
    await asyncio.to_thread(stack.postgres.stop)
    # The tool finishes while PostgreSQL is down; its result waits in the activity's heartbeat.
    handle = stack.temporal.get_workflow_handle(f"session-{session_id}")
    async with asyncio.timeout(30):
        while True:
            pending = (await handle.describe()).raw_description.pending_activities
            kept = [
                a
                for a in pending
                if a.activity_type.name == "run_tool"
                and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                and a.heartbeat_details.payloads
            ]
            if kept:
                break
            await asyncio.sleep(0.2)
    assert SLOW_RUNS[label] == ["started", "finished"]
    stack.workers.kill(first)
    stack.workers.start()
    await asyncio.to_thread(stack.postgres.start)
    await stack.check_turns(base, stack.watchers[0], turns=1)
    assert SLOW_RUNS[label] == ["started", "finished"], (
        "the kept result was stored; the tool did not run again"
    )
