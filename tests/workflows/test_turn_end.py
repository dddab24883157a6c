"""The session workflow's own durability, on Temporal's time-skipping test server with stand-in
activities registered under the real names (tests/chaos runs the same through real services):

- a turn's end that cannot be stored by the quick local retries (the database is away) is stored by
  the regular activity that retries for hours, and the session goes on;
- a turn whose first step finds an earlier unanswered message gives way to it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.schemas.turns import ReasonInput, ReasonResult, SessionInput, TurnEnd
from core.temporal import workflow_runner
from tests.replaying import replay
from workflows.session import SessionWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"


class Stand:
    """reason answers at once (or names an earlier message, once); finish_turn fails while the
    `database_away` count lasts, and records the ends it stores (and how: local or not)."""

    def __init__(self, *, database_away: int = 0, earlier: dict[str, str] | None = None) -> None:
        self.database_away = database_away
        self.earlier = dict(earlier or {})  # input message -> a message to answer first
        self.ends: list[tuple[str, bool]] = []
        self.ended = asyncio.Event()

    @activity.defn(name="reason")
    async def reason(self, params: ReasonInput) -> ReasonResult:
        if (first := self.earlier.pop(params.input_message_id, None)) is not None:
            return ReasonResult(
                message_id=params.message_id, tool_calls=[], text_preview="", earlier_message_id=first
            )
        return ReasonResult(message_id=params.message_id, tool_calls=[], text_preview="ok", max_iterations=5)

    @activity.defn(name="finish_turn")
    async def finish_turn(self, params: TurnEnd) -> None:
        if self.database_away > 0:
            self.database_away -= 1
            raise RuntimeError("PostgreSQL is not answering")
        self.ends.append((params.input_message_id, activity.info().is_local))
        self.ended.set()


async def _run(env: WorkflowEnvironment, stand: Stand, pending: list[str], turns: int) -> WorkflowHistory:
    """Runs the session workflow until `turns` turns have ended; returns the first run's history."""
    task_queue = f"turn-end-{uuid.uuid4().hex}"
    session_id = str(uuid.uuid4())
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[SessionWorkflow],
        workflow_runner=workflow_runner(),
        activities=[stand.reason, stand.finish_turn],
    ):
        handle = await env.client.start_workflow(
            SessionWorkflow.run,
            SessionInput(session_id=session_id, agent_id=str(uuid.uuid4()), pending=pending),
            id=f"session-{session_id}",
            task_queue=task_queue,
        )
        try:
            async with asyncio.timeout(60):
                while len(stand.ends) < turns:
                    stand.ended.clear()
                    await stand.ended.wait()
            first = env.client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
            return await first.fetch_history()
        finally:
            await _terminate(env.client.get_workflow_handle(handle.id))


async def _terminate(handle: WorkflowHandle[Any, Any]) -> None:
    """Ends the session's current run. A run that continues as new while the terminate is on its
    way answers "Completed workflow" (seen in CI): its successor is then the one to end."""
    for _ in range(20):
        try:
            await handle.terminate("test over")
            return
        except RPCError:
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                return
    raise AssertionError("the session's run could not be terminated")


async def test_a_turn_end_the_local_retries_cannot_store_is_stored_by_the_long_retries(
    env: WorkflowEnvironment,
) -> None:
    # Five local attempts fail (~15 s), then one of the regular activity's.
    stand = Stand(database_away=6)
    history = await _run(env, stand, ["m1", "m2"], turns=2)
    assert stand.ends == [("m1", False), ("m2", True)], "the first end went the long way, the next the short"
    await replay(history, [SessionWorkflow])
    if os.environ.get("EVERLOOP_RECORD_HISTORIES"):
        (HISTORIES / "session_turn_end_retried.json").write_text(history.to_json())


async def test_a_turn_gives_way_to_an_earlier_unanswered_message(env: WorkflowEnvironment) -> None:
    # m2's signal came first; its first step finds m1 stored before it and unanswered.
    stand = Stand(earlier={"m2": "m1"})
    history = await _run(env, stand, ["m2"], turns=2)
    assert [message for message, _ in stand.ends] == ["m1", "m2"]
    await replay(history, [SessionWorkflow])
    if os.environ.get("EVERLOOP_RECORD_HISTORIES"):
        (HISTORIES / "session_earlier_message_first.json").write_text(history.to_json())
