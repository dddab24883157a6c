"""The session workflow's control flow, on Temporal's time-skipping test server with stand-in
activities registered under the real names (as temporalio/samples-python tests workflows): the
step limit, a cancel during a tool call or an approval wait, a step that fails for good or only
for a while, a message signalled more than once, and tool calls in parallel. What the workflow
decides is read from what the stand-ins received; tests/loop covers the same through real services.

The clock skips only while a client awaits a workflow's result, which these tests never do (the
session runs until it is terminated): they wait on the stand-ins with a timeout, and skip time with
`env.sleep` where a timer matters.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any

import msgspec
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.schemas.turns import (
    ActCompleted,
    ApprovalDecision,
    LlmFailure,
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

WAIT = 20.0  # seconds of real time any one expected event may take


class Stand:
    """Stand-ins for `reason`, `run_tool` and `finish_turn` that record what they received, in
    order, in `log`. By default a step answers without tool calls (with the agent's step limit when
    it opens the turn, as the real step does) and a tool succeeds; a test's subclass changes
    `answer` and `tool`."""

    limit = 5

    def __init__(self) -> None:
        self.reasons: list[ReasonInput] = []
        self.reason_attempts: list[int] = []
        self.reason_runs: list[str] = []  # the workflow run of each step
        self.tool_inputs: list[ToolInput] = []
        self.ends: list[TurnEnd] = []
        self.log: list[str] = []
        self._changed = asyncio.Event()

    def note(self, entry: str) -> None:
        self.log.append(entry)
        self._changed.set()

    async def until(self, check: Callable[[], bool], what: str) -> None:
        """Waits (in real time) until `check()` holds; every stand-in call wakes it."""
        try:
            async with asyncio.timeout(WAIT):
                while not check():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; log: {self.log}") from None

    async def answer(self, params: ReasonInput) -> ReasonResult:
        return ReasonResult(
            message_id=params.message_id,
            tool_calls=[],
            text_preview="ok",
            max_iterations=self.limit if params.open_turn else None,
        )

    async def tool(self, params: ToolInput) -> ToolOutcome:
        return ToolOutcome(tool_call_id=params.tool_call_id, status="success")

    @activity.defn(name="reason")
    async def reason(self, params: ReasonInput) -> ReasonResult:
        info = activity.info()
        assert info.workflow_run_id is not None
        self.reasons.append(params)
        self.reason_attempts.append(info.attempt)
        self.reason_runs.append(info.workflow_run_id)
        self.note(f"reason {params.input_message_id} {params.iteration} attempt {info.attempt}")
        try:
            return await self.answer(params)
        except BaseException as exc:
            self.note(f"reason {params.input_message_id} {params.iteration} raised {type(exc).__name__}")
            raise

    @activity.defn(name="run_tool")
    async def run_tool(self, params: ToolInput) -> ToolOutcome:
        self.tool_inputs.append(params)
        self.note(f"start {params.tool_call_id}")
        try:
            outcome = await self.tool(params)
        except BaseException as exc:
            self.note(f"raised {params.tool_call_id} {type(exc).__name__}")
            raise
        self.note(f"done {params.tool_call_id}")
        return outcome

    @activity.defn(name="finish_turn")
    async def finish_turn(self, params: TurnEnd) -> None:
        self.ends.append(params)
        self.note(f"end {params.input_message_id} {params.outcome}")


def _worker(env: WorkflowEnvironment, stand: Stand, task_queue: str) -> Worker:
    return Worker(
        env.client,
        task_queue=task_queue,
        workflows=[SessionWorkflow],
        workflow_runner=workflow_runner(),
        activities=[stand.reason, stand.run_tool, stand.finish_turn],
        # A heartbeat reaches the server (and brings back a cancel) at once, not 8 s later.
        max_heartbeat_throttle_interval=timedelta(milliseconds=100),
    )


def _start_input(session_id: str, pending: list[str]) -> SessionInput:
    return SessionInput(session_id=session_id, agent_id=str(uuid.uuid4()), pending=pending)


@asynccontextmanager
async def session_loop(
    env: WorkflowEnvironment, stand: Stand, pending: list[str]
) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    """A worker with the stand-ins on its own task queue, and a session workflow with `pending`;
    terminated at the end, so its idle timer cannot hold the clock."""
    task_queue = f"control-{uuid.uuid4().hex}"
    session_id = str(uuid.uuid4())
    async with _worker(env, stand, task_queue):
        handle = await env.client.start_workflow(
            SessionWorkflow.run,
            _start_input(session_id, pending),
            id=f"session-{session_id}",
            task_queue=task_queue,
        )
        try:
            # Without a run id: signals, updates and queries reach the latest run.
            yield env.client.get_workflow_handle(handle.id)
        finally:
            await env.client.get_workflow_handle(handle.id).terminate("test over")


async def _eventually(probe: Callable[[], Awaitable[object]], expected: object) -> None:
    """Polls a query until it answers `expected` (a query sees the workflow's state as of its
    last completed task). Each query has half a second: the test server never answers one that
    reaches a run as it continues as new, so such a query is asked again (of the new run)."""
    seen: object = "(no answer)"
    try:
        async with asyncio.timeout(WAIT):
            while True:
                try:
                    seen = await asyncio.wait_for(probe(), 0.5)
                except TimeoutError:
                    continue
                if seen == expected:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"the query answered {seen!r}, not {expected!r}") from None


def _call(call_id: str, **options: Any) -> ToolCallRef:
    return ToolCallRef(id=call_id, name="add", timeout_s=5, **options)


async def _held(event: asyncio.Event) -> None:
    """Waits for a test to set `event`, heartbeating meanwhile, as a long tool call does: the
    heartbeat is how a cancel reaches a running activity."""
    while not event.is_set():
        activity.heartbeat()
        with suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 0.05)


# --- the step limit -------------------------------------------------------------------------------


class AlwaysACall(Stand):
    """Every step asks for a tool call; only the turn's first step knows the agent's limit."""

    limit = 3

    async def answer(self, params: ReasonInput) -> ReasonResult:
        reply = await super().answer(params)
        reply.tool_calls = [_call(f"call_{params.iteration}")]
        return reply


async def test_a_turn_that_keeps_calling_tools_fails_at_the_agents_step_limit(
    env: WorkflowEnvironment,
) -> None:
    stand = AlwaysACall()
    async with session_loop(env, stand, ["m1"]):
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    assert [r.iteration for r in stand.reasons] == [1, 2, 3], (
        "exactly the limit of steps, from the first reply"
    )
    assert [r.open_turn for r in stand.reasons] == [True, False, False]
    assert [t.tool_call_id for t in stand.tool_inputs] == ["call_1", "call_2", "call_3"]
    assert [(t.iteration, t.message_id) for t in stand.tool_inputs] == [
        (r.iteration, r.message_id) for r in stand.reasons
    ]
    # Each step stores the act before it; the last act has no step after it.
    assert stand.reasons[0].act is None
    for step, act_before in zip(stand.reasons[1:], stand.reasons, strict=False):
        assert step.act == ActCompleted(
            session_id=act_before.session_id,
            turn_id=act_before.turn_id,
            iteration=act_before.iteration,
            outcomes=[ToolOutcome(tool_call_id=f"call_{act_before.iteration}", status="success")],
        )
    [end] = stand.ends
    turn_id = stand.reasons[0].turn_id
    assert {r.turn_id for r in stand.reasons} == {turn_id} and end.turn_id == turn_id
    assert (end.outcome, end.error_code, end.iterations) == ("failed", "max_iterations", 3)
    assert end.error == "the turn reached the agent's limit of 3 reasoning steps"
    assert end.notice_message_id is None
    assert end.act == ActCompleted(
        session_id=end.session_id,
        turn_id=turn_id,
        iteration=3,
        outcomes=[ToolOutcome(tool_call_id="call_3", status="success")],
    )


# --- cancel ---------------------------------------------------------------------------------------


class OneLongCall(Stand):
    """The first step asks for one tool call that runs until it is released or cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.tool_cancelled = False

    async def answer(self, params: ReasonInput) -> ReasonResult:
        reply = await super().answer(params)
        if params.iteration == 1:
            reply.tool_calls = [_call("call_1")]
        return reply

    async def tool(self, params: ToolInput) -> ToolOutcome:
        try:
            await _held(self.release)
        except asyncio.CancelledError:
            self.tool_cancelled = True
            raise
        return await super().tool(params)


async def test_cancel_during_a_tool_call_stops_it_and_ends_the_turn_cancelled(
    env: WorkflowEnvironment,
) -> None:
    stand = OneLongCall()
    async with session_loop(env, stand, ["m1"]) as handle:
        await stand.until(lambda: "start call_1" in stand.log, "the tool call")
        turn_id = stand.reasons[0].turn_id
        assert await handle.query("current_turn") == turn_id
        assert await handle.execute_update("cancel_turn", result_type=bool) is True
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
        assert stand.tool_cancelled, "the running activity was cancelled, not left running"
        # Waited for the tool to stop (WAIT_CANCELLATION_COMPLETED) before the turn ended.
        assert stand.log.index("raised call_1 CancelledError") < stand.log.index("end m1 cancelled")
        await _eventually(lambda: handle.query("current_turn"), None)
        assert await handle.execute_update("cancel_turn", result_type=bool) is False
    assert len(stand.reasons) == 1, "no step after the cancel"
    [end] = stand.ends
    assert (end.turn_id, end.input_message_id, end.outcome, end.iterations) == (turn_id, "m1", "cancelled", 1)
    assert (end.error, end.error_code, end.notice_message_id) == (None, None, None)
    assert end.act is None


async def test_cancel_with_no_turn_running_returns_false(env: WorkflowEnvironment) -> None:
    stand = Stand()
    async with session_loop(env, stand, []) as handle:
        assert await handle.execute_update("cancel_turn", result_type=bool) is False
        assert await handle.query("current_turn") is None
        await handle.signal("new_message", "m1")
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    assert stand.ends[0].outcome == "completed", "a refused cancel leaves nothing behind for the next turn"


class SecondStepHeld(Stand):
    """The first step asks for a tool call; the second runs until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.step_cancelled = False

    async def answer(self, params: ReasonInput) -> ReasonResult:
        reply = await super().answer(params)
        if params.iteration == 1:
            reply.tool_calls = [_call("call_1")]
            return reply
        try:
            await _held(asyncio.Event())
        except asyncio.CancelledError:
            self.step_cancelled = True
            raise
        return reply


async def test_cancel_during_a_later_step_leaves_the_act_before_it_to_finish_turn(
    env: WorkflowEnvironment,
) -> None:
    stand = SecondStepHeld()
    async with session_loop(env, stand, ["m1"]) as handle:
        await stand.until(lambda: len(stand.reasons) == 2, "the second step")
        assert await handle.execute_update("cancel_turn", result_type=bool) is True
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    assert stand.step_cancelled
    [end] = stand.ends
    assert (end.outcome, end.iterations, end.error_code) == ("cancelled", 2, None)
    # The cancelled step may not have stored the act it was given: finish_turn stores it (by its keys).
    assert end.act is not None and end.act == stand.reasons[1].act
    assert end.act.iteration == 1
    assert end.act.outcomes == [ToolOutcome(tool_call_id="call_1", status="success")]


# --- approval (test_tool_approval_timer.py has decision vs timeout and a second decision) ----------


class ApprovalAndPlainCall(Stand):
    """The first step asks for a call that needs approval and one that does not; `call_a` then runs
    until released."""

    def __init__(self, *, hold_reason: bool = False) -> None:
        super().__init__()
        self.release_tool = asyncio.Event()
        self.release_reason = asyncio.Event()
        if not hold_reason:
            self.release_reason.set()

    async def answer(self, params: ReasonInput) -> ReasonResult:
        reply = await super().answer(params)
        if params.iteration == 1:
            await _held(self.release_reason)
            reply.tool_calls = [_call("call_a", require_approval=True), _call("call_b")]
        return reply

    async def tool(self, params: ToolInput) -> ToolOutcome:
        if params.tool_call_id == "call_a":
            await _held(self.release_tool)
        return await super().tool(params)


async def test_a_decision_clears_pending_approvals_and_the_other_call_does_not_wait(
    env: WorkflowEnvironment,
) -> None:
    stand = ApprovalAndPlainCall()
    async with session_loop(env, stand, ["m1"]) as handle:
        await stand.until(lambda: "done call_b" in stand.log, "the call without approval")
        await _eventually(lambda: handle.query("pending_approvals"), ["call_a"])
        decision = ApprovalDecision(tool_call_id="call_a", decision="approve", user_id="u1")
        await handle.execute_update("resolve_approval", decision, result_type=ApprovalDecision)
        await stand.until(lambda: "start call_a" in stand.log, "the approved call")
        # Decided, its call running: nothing waits for a person any more.
        assert await handle.query("pending_approvals") == []
        assert await handle.query("current_turn") == stand.reasons[0].turn_id
        stand.release_tool.set()
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    call_a, call_b = sorted(stand.tool_inputs, key=lambda t: t.tool_call_id)
    assert (call_a.approval, call_b.approval) == (decision, None)
    assert stand.reasons[1].act is not None
    assert stand.reasons[1].act.outcomes == [
        ToolOutcome(tool_call_id="call_a", status="success"),
        ToolOutcome(tool_call_id="call_b", status="success"),
    ]
    assert stand.ends[0].outcome == "completed"


async def test_a_decision_that_arrives_before_the_wait_is_used(env: WorkflowEnvironment) -> None:
    # After a worker restart the update can reach the workflow before its replay reaches the wait.
    stand = ApprovalAndPlainCall(hold_reason=True)
    async with session_loop(env, stand, ["m1"]) as handle:
        await stand.until(lambda: len(stand.reasons) == 1, "the first step")
        assert await handle.query("pending_approvals") == []
        decision = ApprovalDecision(tool_call_id="call_a", decision="deny", reason="not now", user_id="u1")
        accepted = await handle.execute_update("resolve_approval", decision, result_type=ApprovalDecision)
        assert accepted == decision
        stand.release_reason.set()
        stand.release_tool.set()
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    call_a = next(t for t in stand.tool_inputs if t.tool_call_id == "call_a")
    assert call_a.approval == decision
    assert stand.ends[0].outcome == "completed"


async def test_cancel_while_a_call_waits_for_approval(env: WorkflowEnvironment) -> None:
    stand = ApprovalAndPlainCall()
    async with session_loop(env, stand, ["m1"]) as handle:
        await _eventually(lambda: handle.query("pending_approvals"), ["call_a"])
        assert await handle.execute_update("cancel_turn", result_type=bool) is True
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
        await _eventually(lambda: handle.query("pending_approvals"), [])
    assert [t.tool_call_id for t in stand.tool_inputs] == ["call_b"], "the waiting call never ran"
    assert len(stand.reasons) == 1
    [end] = stand.ends
    assert (end.outcome, end.iterations, end.act) == ("cancelled", 1, None)


# --- a step that fails ----------------------------------------------------------------------------


def _fatal(kind: str, message: str) -> ApplicationError:
    """A step's failure for good, as activities/provider.py's `fatal` raises it."""
    return ApplicationError(
        message, LlmFailure(status=None, kind=kind, message=message), type=kind, non_retryable=True
    )


REFUSED = "an image URL of the conversation points at an address this server does not call"


class FailsAtStep(Stand):
    """Step `at` fails for good; the steps before it ask for one tool call."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    async def answer(self, params: ReasonInput) -> ReasonResult:
        if params.iteration == self.at:
            raise _fatal("image_url_refused", REFUSED)
        reply = await super().answer(params)
        reply.tool_calls = [_call(f"call_{params.iteration}")]
        return reply


async def test_a_first_step_that_fails_for_good_ends_the_turn_failed_with_its_reason(
    env: WorkflowEnvironment,
) -> None:
    stand = FailsAtStep(1)
    async with session_loop(env, stand, ["m1"]):
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    assert stand.reason_attempts == [1], "non-retryable: one attempt"
    assert stand.tool_inputs == []
    [step] = stand.reasons
    [end] = stand.ends
    assert (end.outcome, end.error_code, end.error) == ("failed", "image_url_refused", REFUSED)
    assert (end.turn_id, end.input_message_id, end.iterations) == (step.turn_id, "m1", 1)
    # The failed step stored nothing: finish_turn opens the turn and stores the notice.
    assert end.act is None
    assert end.notice_message_id is not None
    assert str(uuid.UUID(end.notice_message_id)) == end.notice_message_id
    assert end.notice_message_id != step.message_id


async def test_a_later_step_that_fails_for_good_leaves_its_act_to_finish_turn(
    env: WorkflowEnvironment,
) -> None:
    stand = FailsAtStep(2)
    async with session_loop(env, stand, ["m1"]):
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    assert [r.iteration for r in stand.reasons] == [1, 2]
    [end] = stand.ends
    assert (end.outcome, end.error_code, end.error, end.iterations) == (
        "failed",
        "image_url_refused",
        REFUSED,
        2,
    )
    assert end.notice_message_id is not None
    # Step 2 was to store iteration 1's act; it failed, so the act is finish_turn's to store.
    assert end.act == stand.reasons[1].act
    assert end.act == ActCompleted(
        session_id=end.session_id,
        turn_id=end.turn_id,
        iteration=1,
        outcomes=[ToolOutcome(tool_call_id="call_1", status="success")],
    )


class FailsTwiceThenAnswers(Stand):
    """The first step's first two attempts fail as a dropped connection does (retryable)."""

    async def answer(self, params: ReasonInput) -> ReasonResult:
        if activity.info().attempt <= 2:
            raise ConnectionResetError("the provider hung up")
        return await super().answer(params)


async def test_a_step_that_fails_for_a_while_is_retried_and_the_turn_completes(
    env: WorkflowEnvironment,
) -> None:
    stand = FailsTwiceThenAnswers()
    async with session_loop(env, stand, ["m1"]):
        await stand.until(lambda: len(stand.reasons) == 1, "the first attempt")
        # The retries' backoff (1 s, then 2 s) is a server timer: skip it.
        await env.sleep(timedelta(seconds=5))
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    assert stand.reason_attempts == [1, 2, 3]
    first = stand.reasons[0]
    assert all(r == first for r in stand.reasons), "every attempt gets the same input (and message id)"
    assert first.open_turn and first.iteration == 1
    [end] = stand.ends
    assert (end.outcome, end.iterations, end.error, end.error_code) == ("completed", 1, None, None)
    assert end.notice_message_id is None


RATE_LIMITED = "the provider is rate limiting (HTTP 429)"


class AlwaysRateLimited(Stand):
    """Every attempt fails as activities/provider.py's `provider_error` reports a 429: retryable."""

    async def answer(self, params: ReasonInput) -> ReasonResult:
        raise ApplicationError(
            RATE_LIMITED, LlmFailure(status=429, kind="llm_error", message=RATE_LIMITED), type="llm_error"
        )


async def test_a_step_whose_retries_run_out_fails_the_turn_with_the_last_failure(
    env: WorkflowEnvironment,
) -> None:
    stand = AlwaysRateLimited()
    async with session_loop(env, stand, ["m1"]):
        await stand.until(lambda: len(stand.reasons) == 1, "the first attempt")
        # 1 + 2 + 4 + 8 + 16 s of backoff between the six attempts: skip it.
        await env.sleep(timedelta(minutes=1))
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    assert stand.reason_attempts == [1, 2, 3, 4, 5, 6], "LLM_RETRY's maximum_attempts"
    [end] = stand.ends
    assert (end.outcome, end.error_code, end.error) == ("failed", "llm_error", RATE_LIMITED)
    assert end.iterations == 1
    assert end.notice_message_id is not None and end.act is None


# --- the same message more than once --------------------------------------------------------------


class HeldSteps(Stand):
    """Each turn's step waits until the test releases its message."""

    def __init__(self) -> None:
        super().__init__()
        self._gates: dict[str, asyncio.Event] = {}

    def gate(self, message_id: str) -> asyncio.Event:
        return self._gates.setdefault(message_id, asyncio.Event())

    async def answer(self, params: ReasonInput) -> ReasonResult:
        await _held(self.gate(params.input_message_id))
        return await super().answer(params)


async def test_a_message_signalled_again_runs_once_and_a_new_one_waits_its_turn(
    env: WorkflowEnvironment,
) -> None:
    stand = HeldSteps()
    task_queue = f"control-{uuid.uuid4().hex}"
    session_id = str(uuid.uuid4())
    # Started (with m1's signal) and signalled m1 again before any worker polls: both before its turn.
    started = await env.client.start_workflow(
        SessionWorkflow.run,
        _start_input(session_id, []),
        id=f"session-{session_id}",
        task_queue=task_queue,
        start_signal="new_message",
        start_signal_args=["m1"],
    )
    handle = env.client.get_workflow_handle(started.id)
    try:
        await handle.signal("new_message", "m1")
        async with _worker(env, stand, task_queue):
            await stand.until(lambda: len(stand.reasons) == 1, "m1's step")
            m1_turn = stand.reasons[0].turn_id
            assert await handle.query("current_turn") == m1_turn
            # During m1's turn: m1 a third time, and a new message.
            await handle.signal("new_message", "m1")
            await handle.signal("new_message", "m2")
            stand.gate("m1").set()
            # m2 was pending when m1's run continued as new: the next run answers it.
            await stand.until(lambda: len(stand.reasons) == 2, "m2's step")
            m2_turn = stand.reasons[1].turn_id
            assert m2_turn != m1_turn
            assert await handle.query("current_turn") == m2_turn
            # m1 is in the handled list the new run was given; m2 in its own.
            await handle.signal("new_message", "m1")
            await handle.signal("new_message", "m2")
            stand.gate("m2").set()
            await stand.until(lambda: len(stand.ends) == 2, "m2's end")
            # Once m2's run has continued as new (a signal racing the turn's last task is the next
            # test's case), both again, to the idle run; m3 would queue behind either.
            await _eventually(lambda: handle.query("current_turn"), None)
            idle_run = (await handle.describe()).run_id
            assert idle_run not in stand.reason_runs
            await handle.signal("new_message", "m1")
            await handle.signal("new_message", "m2")
            await handle.signal("new_message", "m3")
            stand.gate("m3").set()
            await stand.until(lambda: len(stand.ends) == 3, "m3's end")
            await _eventually(lambda: handle.query("current_turn"), None)
    finally:
        await handle.terminate("test over")
    assert [e.input_message_id for e in stand.ends] == ["m1", "m2", "m3"]
    assert [r.input_message_id for r in stand.reasons] == ["m1", "m2", "m3"]
    assert [e.turn_id for e in stand.ends] == [r.turn_id for r in stand.reasons]
    assert all(e.outcome == "completed" for e in stand.ends)
    # One turn after the other, each in a run of its own (continue-as-new after every turn).
    assert stand.log.index("end m1 completed") < stand.log.index("reason m2 1 attempt 1")
    assert stand.log.index("end m2 completed") < stand.log.index("reason m3 1 attempt 1")
    assert len(set(stand.reason_runs)) == 3 and stand.reason_runs[2] == idle_run


async def test_a_message_signalled_as_a_turn_ends_runs_next_and_the_end_may_be_stored_twice(
    env: WorkflowEnvironment,
) -> None:
    """A signal that lands while the turn's last workflow task (finish_turn, a local activity, then
    continue-as-new) is in flight fails that task's completion; the retried task runs finish_turn
    again, as Temporal runs a local activity whose marker was not recorded. The repeat is the same
    turn's end (only its duration differs): activities/turns.py stores an end once, by its keys."""
    stand = Stand()
    async with session_loop(env, stand, ["m1"]) as handle:
        await stand.until(lambda: len(stand.ends) == 1, "m1's end")
        await handle.signal("new_message", "m1")
        await handle.signal("new_message", "m2")
        await stand.until(lambda: any(e.input_message_id == "m2" for e in stand.ends), "m2's end")
        await _eventually(lambda: handle.query("current_turn"), None)
    assert [r.input_message_id for r in stand.reasons] == ["m1", "m2"]
    turns = {r.turn_id: r.input_message_id for r in stand.reasons}
    for end in stand.ends:
        assert turns[end.turn_id] == end.input_message_id
        first = next(e for e in stand.ends if e.turn_id == end.turn_id)
        assert msgspec.structs.replace(end, duration_ms=first.duration_ms) == first
    assert [turns[t] for t in dict.fromkeys(e.turn_id for e in stand.ends)] == ["m1", "m2"]


# --- tool calls in parallel -----------------------------------------------------------------------


class ThreeCalls(Stand):
    """The first step asks for three calls: `call_a` and `call_b` each finish only once the other
    has started; `call_c` fails for good (its worker broke: not a tool error, which is a result)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = {"call_a": asyncio.Event(), "call_b": asyncio.Event()}
        self.c_attempts: list[int] = []

    async def answer(self, params: ReasonInput) -> ReasonResult:
        reply = await super().answer(params)
        if params.iteration == 1:
            reply.tool_calls = [_call("call_a"), _call("call_b"), _call("call_c")]
        return reply

    async def tool(self, params: ToolInput) -> ToolOutcome:
        if params.tool_call_id == "call_c":
            self.c_attempts.append(activity.info().attempt)
            raise ApplicationError("the tool's sandbox is gone", non_retryable=True)
        self.started[params.tool_call_id].set()
        other = "call_b" if params.tool_call_id == "call_a" else "call_a"
        try:
            await asyncio.wait_for(self.started[other].wait(), WAIT / 2)
        except TimeoutError:
            raise ApplicationError(f"{other} did not start alongside", non_retryable=True) from None
        return await super().tool(params)


async def test_tool_calls_run_in_parallel_and_one_that_fails_for_good_is_an_error_result(
    env: WorkflowEnvironment,
) -> None:
    stand = ThreeCalls()
    async with session_loop(env, stand, ["m1"]):
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    starts = [entry for entry in stand.log if entry in ("start call_a", "start call_b", "done call_a")]
    assert starts[:2] in (["start call_a", "start call_b"], ["start call_b", "start call_a"]), stand.log
    assert stand.c_attempts == [1]
    first, second = stand.reasons
    assert {(t.tool_call_id, t.iteration, t.message_id, t.approval) for t in stand.tool_inputs} == {
        (call, 1, first.message_id, None) for call in ("call_a", "call_b", "call_c")
    }
    # The next step gets the act with every outcome, in the reply's order.
    assert second.act == ActCompleted(
        session_id=first.session_id,
        turn_id=first.turn_id,
        iteration=1,
        outcomes=[
            ToolOutcome(tool_call_id="call_a", status="success"),
            ToolOutcome(tool_call_id="call_b", status="success"),
            ToolOutcome(tool_call_id="call_c", status="error"),
        ],
    )
    [end] = stand.ends
    assert (end.outcome, end.iterations, end.error_code, end.act) == ("completed", 2, None, None)
