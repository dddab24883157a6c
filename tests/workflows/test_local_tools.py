"""Short pure tools (`ToolCallRef.local`) run as local activities: one attempt inside the workflow
task, then the regular activity if that attempt fails, and never after a cancel. On the
time-skipping server with the stand-ins of test_session_control.py; tests/chaos/test_local_tools.py
kills a worker and stops PostgreSQL under the real ones."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from core.durability import LOCAL_TOOL_LIMIT
from core.schemas.turns import ReasonInput, ReasonResult, ToolCallRef, ToolInput, ToolOutcome
from tests.workflows.test_session_control import Stand, _held, session_loop


class Calls(Stand):
    """The first step asks for a local call and a regular one; each run of a call notes whether it
    ran as a local activity."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[str, bool]] = []

    async def answer(self, params: ReasonInput) -> ReasonResult:
        reply = await super().answer(params)
        if params.iteration == 1:
            reply.tool_calls = [
                ToolCallRef(id="call_local", name="add", timeout_s=5, local=True),
                ToolCallRef(id="call_regular", name="fetch", timeout_s=5),
            ]
        return reply

    async def tool(self, params: ToolInput) -> ToolOutcome:
        self.runs.append((params.tool_call_id, activity.info().is_local))
        return await super().tool(params)


async def test_a_local_call_runs_inside_the_workflow_task_and_a_regular_one_as_an_activity(
    env: WorkflowEnvironment,
) -> None:
    stand = Calls()
    async with session_loop(env, stand, ["m1"]) as handle:
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
        history = await env.client.get_workflow_handle(handle.id, run_id=stand.reason_runs[0]).fetch_history()
    assert sorted(stand.runs) == [("call_local", True), ("call_regular", False)]
    assert stand.reasons[1].act is not None
    assert sorted(o.tool_call_id for o in stand.reasons[1].act.outcomes) == ["call_local", "call_regular"]
    assert stand.ends[0].outcome == "completed"
    # In the history: the local call is a marker, only the regular one a scheduled activity.
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled.count("run_tool") == 1
    markers = [e for e in history.events if e.HasField("marker_recorded_event_attributes")]
    assert markers, "the local call is recorded as a marker"


class LocalFailsOnce(Calls):
    """The local attempt of the local call fails as an unavailable database does."""

    async def tool(self, params: ToolInput) -> ToolOutcome:
        if params.tool_call_id == "call_local" and activity.info().is_local:
            self.runs.append((params.tool_call_id, True))
            raise ApplicationError("the database is unavailable")
        return await super().tool(params)


async def test_a_failed_local_attempt_is_run_again_as_a_regular_activity(env: WorkflowEnvironment) -> None:
    stand = LocalFailsOnce()
    async with session_loop(env, stand, ["m1"]):
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    local_runs = [is_local for call, is_local in stand.runs if call == "call_local"]
    assert local_runs == [True, False], "one local attempt, then the regular activity"
    assert stand.reasons[1].act is not None
    assert {o.tool_call_id: o.status for o in stand.reasons[1].act.outcomes} == {
        "call_local": "success",
        "call_regular": "success",
    }
    assert stand.ends[0].outcome == "completed"


class LocalTooSlow(Calls):
    """The local attempt of the local call outlasts LOCAL_TOOL_LIMIT (a stalled database)."""

    async def tool(self, params: ToolInput) -> ToolOutcome:
        if params.tool_call_id == "call_local" and activity.info().is_local:
            self.runs.append((params.tool_call_id, True))
            await asyncio.sleep(LOCAL_TOOL_LIMIT.total_seconds() + 1)
        return await super().tool(params)


async def test_a_local_attempt_past_its_limit_is_run_again_as_a_regular_activity(
    env: WorkflowEnvironment,
) -> None:
    # A timeout reaches the workflow as an ActivityError, a raised error as a bare ApplicationError:
    # both move the call.
    stand = LocalTooSlow()
    async with session_loop(env, stand, ["m1"]):
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    local_runs = [is_local for call, is_local in stand.runs if call == "call_local"]
    assert local_runs[0] is True and local_runs[-1] is False, local_runs
    assert local_runs.count(False) == 1
    assert stand.reasons[1].act is not None
    assert {o.status for o in stand.reasons[1].act.outcomes} == {"success"}
    assert stand.ends[0].outcome == "completed"


class LocalHeld(Stand):
    """The first step asks for one local call, which runs until cancelled (heartbeating, as a long
    call does, when it has moved to a regular activity)."""

    def __init__(self) -> None:
        super().__init__()
        self.local_runs: list[bool] = []

    async def answer(self, params: ReasonInput) -> ReasonResult:
        reply = await super().answer(params)
        if params.iteration == 1:
            reply.tool_calls = [ToolCallRef(id="call_1", name="add", timeout_s=5, local=True)]
        return reply

    async def tool(self, params: ToolInput) -> ToolOutcome:
        self.local_runs.append(activity.info().is_local)
        await _held(asyncio.Event())
        raise AssertionError("unreachable")


async def test_a_cancel_sent_during_a_local_call_ends_the_turn_once_the_attempt_ends(
    env: WorkflowEnvironment,
) -> None:
    # A workflow task that waits on a local activity takes nothing new in (a cancel, an approval)
    # until the activity ends, at most LOCAL_TOOL_LIMIT later: then the cancel ends the turn, and
    # whatever the call moved to is cancelled with it.
    stand = LocalHeld()
    async with session_loop(env, stand, ["m1"]) as handle:
        await stand.until(lambda: "start call_1" in stand.log, "the local call")
        cancel = asyncio.create_task(handle.execute_update("cancel_turn", result_type=bool))
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
        assert await cancel is True
    assert stand.local_runs[0] is True
    assert "done call_1" not in stand.log
    assert len(stand.reasons) == 1, "no step after the cancel"
    assert stand.ends[0].outcome == "cancelled"
