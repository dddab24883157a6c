"""A forked session's turn (an Opswald replay) on the time-skipping server with stand-in activities
(tests/workflows/test_session_control.py): it starts at the fork's reasoning step, each step waits
at the gate the controls move, parallel tool calls pass one `step` at a time, a refused control
changes nothing, and the stop signal ends the turn cancelled. tests/loop/test_forks.py covers the
same through real services."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from core.schemas.turns import (
    ForkStart,
    ReasonInput,
    ReasonResult,
    ReplayAction,
    ReplayControl,
    ReplayState,
    SessionInput,
    SessionLoop,
)
from tests.workflows.test_session_control import WAIT, Stand, _call, _worker
from workflows.session import SessionWorkflow


class TwoCallsThenText(Stand):
    """The fork's first step asks for two tool calls at once; the next one answers."""

    async def answer(self, params: ReasonInput) -> ReasonResult:
        reply = await super().answer(params)
        if len(self.reasons) == 1:
            reply.tool_calls = [_call("call_a"), _call("call_b")]
        return reply


@asynccontextmanager
async def fork_loop(
    env: WorkflowEnvironment, stand: Stand, *, interactive: bool
) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    task_queue = f"fork-{uuid.uuid4().hex}"
    session_id = str(uuid.uuid4())
    fork = ForkStart(
        replay_id=str(uuid.uuid4()), message_id="m1", iteration=2, step=3, interactive=interactive
    )
    async with _worker(env, stand, task_queue):
        handle = await env.client.start_workflow(
            SessionWorkflow.run,
            SessionInput(session_id=session_id, agent_id=str(uuid.uuid4()), pending=["m1"], fork=fork),
            id=f"session-{session_id}",
            task_queue=task_queue,
        )
        yield handle


async def _state(handle: WorkflowHandle[Any, Any]) -> ReplayState:
    state: ReplayState = await handle.query(SessionLoop.REPLAY_STATE, result_type=ReplayState)
    return state


async def _control(
    handle: WorkflowHandle[Any, Any], action: ReplayAction, step: int | None = None
) -> ReplayState:
    state: ReplayState = await handle.execute_update(
        SessionLoop.REPLAY_CONTROL,
        ReplayControl(action=action, step=step),
        result_type=ReplayState,
    )
    return state


async def test_an_auto_fork_starts_at_its_step_and_its_run_ends_with_the_turn(
    env: WorkflowEnvironment,
) -> None:
    stand = TwoCallsThenText()
    async with fork_loop(env, stand, interactive=False) as handle:
        await handle.result()  # the run returns after the fork's turn: no continue-as-new
    assert [(r.iteration, r.open_turn) for r in stand.reasons] == [(2, True), (3, False)]
    assert sorted(t.tool_call_id for t in stand.tool_inputs) == ["call_a", "call_b"]
    [end] = stand.ends
    assert end.fork and end.outcome == "completed" and end.iterations == 3


async def test_interactive_steps_pass_one_at_a_time_and_a_refused_control_changes_nothing(
    env: WorkflowEnvironment,
) -> None:
    stand = TwoCallsThenText()
    async with fork_loop(env, stand, interactive=True) as handle:
        state = await _control(handle, "step")  # step 3: the reasoning step
        assert state.current_step in (2, 3) and state.run_to == 3
        await stand.until(lambda: len(stand.reasons) == 1, "the fork's first step")
        await stand.until(lambda: stand.log[-1].startswith("reason"), "the reply")
        # Steps 4 and 5 are the reply's two calls: one `step` lets one through.
        state = await _control(handle, "step")
        await stand.until(lambda: len(stand.tool_inputs) == 1, "the first call")
        assert stand.tool_inputs[0].tool_call_id == "call_a"
        with pytest.raises(WorkflowUpdateFailedError):
            await _control(handle, "jump", 2)  # step 2 was the recording's: it cannot run here
        assert (await _state(handle)).run_to == 4
        await _control(handle, "jump", 6)  # runs call_b (step 5), holds before step 6
        await stand.until(lambda: len(stand.tool_inputs) == 2, "the second call")
        await _until_held(handle, 6)
        assert len(stand.reasons) == 1
        await _control(handle, "play")
        await handle.result()
    assert len(stand.reasons) == 2 and stand.ends[0].outcome == "completed"


async def _until_held(handle: WorkflowHandle[Any, Any], step: int) -> None:
    """Until the fork holds before `step` (its state, by query; bounded)."""
    async with asyncio.timeout(WAIT):
        while (await _state(handle)).holding_at != step:
            await asyncio.sleep(0.05)


async def test_a_pause_never_lets_a_held_step_through(env: WorkflowEnvironment) -> None:
    stand = TwoCallsThenText()
    async with fork_loop(env, stand, interactive=True) as handle:
        await _until_held(handle, 3)
        state = await _control(handle, "pause", 5)  # further than the hold: the hold stays
        assert state.run_to == 2 and state.holding_at == 3
        await _control(handle, "step")  # step 3 only
        await stand.until(lambda: len(stand.reasons) == 1, "the fork's first step")
        await _until_held(handle, 4)
        state = await _control(handle, "pause")  # before the next step: where it holds already
        assert state.run_to == 3 and stand.tool_inputs == []
        await _control(handle, "play")
        await handle.result()
    assert len(stand.reasons) == 2 and len(stand.tool_inputs) == 2


async def test_the_stop_signal_ends_a_held_fork_cancelled(env: WorkflowEnvironment) -> None:
    stand = TwoCallsThenText()
    async with fork_loop(env, stand, interactive=True) as handle:
        await handle.signal(SessionLoop.STOP_REPLAY)
        await handle.result()
        with pytest.raises(RPCError):  # the run has ended: nothing to control (the API's 409)
            await _control(handle, "play")
    assert stand.reasons == [] and stand.tool_inputs == []
    [end] = stand.ends
    assert end.fork and end.outcome == "cancelled"
