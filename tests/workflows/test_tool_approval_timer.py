"""A tool call waiting for approval, on Temporal's time-skipping test server: a day of waiting
changes nothing, and the agent's approval timeout denies the call. The activities are stand-ins
registered under the real names (the workflow is what is tested here; tests/loop covers the rest)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.schemas.turns import (
    APPROVAL_DECIDED,
    ApprovalDecision,
    ReasonInput,
    ReasonResult,
    SessionInput,
    ToolCallRef,
    ToolInput,
    ToolOutcome,
    TurnEnd,
)
from core.temporal import workflow_runner
from workflows.session import SessionWorkflow

DAY = 86400.0


class Stand:
    """reason asks for one tool call that needs approval, then answers; run_tool records what the
    workflow decided; finish_turn says the turn is over."""

    def __init__(self, approval_timeout_s: float | None) -> None:
        self.approval_timeout_s = approval_timeout_s
        self.tool_inputs: list[ToolInput] = []
        self.turn_over = asyncio.Event()
        self.ends: list[TurnEnd] = []

    @activity.defn(name="reason")
    async def reason(self, params: ReasonInput) -> ReasonResult:
        calls = []
        if params.iteration == 1:
            calls = [
                ToolCallRef(
                    id="call_1",
                    name="add",
                    timeout_s=5,
                    require_approval=True,
                    approval_timeout_s=self.approval_timeout_s,
                )
            ]
        return ReasonResult(message_id=params.message_id, tool_calls=calls, text_preview="", max_iterations=5)

    @activity.defn(name="run_tool")
    async def run_tool(self, params: ToolInput) -> ToolOutcome:
        self.tool_inputs.append(params)
        denied = params.approval is not None and params.approval.decision == "deny"
        return ToolOutcome(tool_call_id=params.tool_call_id, status="denied" if denied else "success")

    @activity.defn(name="finish_turn")
    async def finish_turn(self, params: TurnEnd) -> None:
        self.ends.append(params)
        self.turn_over.set()


@asynccontextmanager
async def session_loop(env: WorkflowEnvironment, stand: Stand) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    """A worker with the stand-ins on its own task queue, and a session workflow with one message;
    the workflow is terminated at the end, so its idle timer cannot hold up the next test's clock."""
    task_queue = f"approval-{uuid.uuid4().hex}"
    worker = Worker(
        env.client,
        task_queue=task_queue,
        workflows=[SessionWorkflow],
        workflow_runner=workflow_runner(),
        activities=[stand.reason, stand.run_tool, stand.finish_turn],
    )
    session_id = str(uuid.uuid4())
    async with worker:
        handle = await env.client.start_workflow(
            SessionWorkflow.run,
            SessionInput(session_id=session_id, agent_id=str(uuid.uuid4()), pending=[str(uuid.uuid4())]),
            id=f"session-{session_id}",
            task_queue=task_queue,
        )
        try:
            yield env.client.get_workflow_handle(handle.id)
        finally:
            await env.client.get_workflow_handle(handle.id).terminate("test over")


async def test_a_day_of_waiting_then_approval_runs_the_call(env: WorkflowEnvironment) -> None:
    stand = Stand(approval_timeout_s=2 * DAY)
    async with session_loop(env, stand) as handle:
        await env.sleep(timedelta(days=1))
        assert await handle.query("pending_approvals") == ["call_1"]
        assert stand.tool_inputs == [] and not stand.turn_over.is_set()
        decision = ApprovalDecision(tool_call_id="call_1", decision="approve", user_id="u1")
        await handle.execute_update("resolve_approval", decision, result_type=ApprovalDecision)
        await asyncio.wait_for(stand.turn_over.wait(), 30)
    [call] = stand.tool_inputs
    assert call.approval == decision
    assert stand.ends[0].outcome == "completed"


async def test_the_approval_timeout_denies_the_call(env: WorkflowEnvironment) -> None:
    stand = Stand(approval_timeout_s=DAY)
    async with session_loop(env, stand) as handle:
        await env.sleep(timedelta(hours=23))
        assert await handle.query("pending_approvals") == ["call_1"]
        await env.sleep(timedelta(hours=2))
        await asyncio.wait_for(stand.turn_over.wait(), 30)
    [call] = stand.tool_inputs
    assert call.approval is not None
    assert (call.approval.decision, call.approval.decided_by) == ("deny", "timeout")
    assert stand.ends[0].outcome == "completed"


async def test_a_second_decision_is_refused(env: WorkflowEnvironment) -> None:
    stand = Stand(approval_timeout_s=None)
    async with session_loop(env, stand) as handle:
        first = ApprovalDecision(tool_call_id="call_1", decision="deny", reason="no")
        await handle.execute_update("resolve_approval", first, result_type=ApprovalDecision)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            second = ApprovalDecision(tool_call_id="call_1", decision="approve")
            await handle.execute_update("resolve_approval", second, result_type=ApprovalDecision)
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == APPROVAL_DECIDED
        await asyncio.wait_for(stand.turn_over.wait(), 30)
    [call] = stand.tool_inputs
    assert call.approval == first
