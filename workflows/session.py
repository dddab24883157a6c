"""`SessionWorkflow`: one per session (`session-{id}`), one turn at a time, for as long as it lives.

A turn: `reason` -> the reply's tool calls, each its own activity, in parallel -> `reason` ... until a
reply without tool calls, the agent's `max_iterations`, or a cancel. After each turn the workflow
continues as new, so a 500-turn session has the history of a 1-turn one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    import msgspec

    from core.durability import LLM_RETRY, LOCAL_TOOL_LIMIT, STORE_RETRY, STORE_RETRY_WINDOW
    from core.ids import uuid7_at
    from core.schemas.turns import (
        APPROVAL_DECIDED,
        CONTROL_REFUSED,
        ActCompleted,
        ApprovalDecision,
        ForkStart,
        LlmFailure,
        ReasonInput,
        ReasonResult,
        ReplayControl,
        ReplayState,
        SessionInput,
        SessionLoop,
        ToolCallRef,
        ToolInput,
        ToolOutcome,
        ToolResultsDelivered,
        TurnEnd,
        TurnOutcome,
    )

# A tool's own failure is a tool result, not an exception; these retries cover the worker dying.
TOOL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
# A short tool's local attempt is tried once: any failure moves the call to the regular activity.
LOCAL_ONCE = RetryPolicy(maximum_attempts=1)
# Bookkeeping writes: a few quick retries as a local activity (the fast path) ...
LOCAL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
# ... then, for a turn's end only, as a regular activity for as long as the database may be away
# (core.durability.STORE_RETRY).
# A step waits out a database outage inside its attempt (activities/persist.py), before and after
# its real work; the heartbeat timeout, not this, is what notices a dead worker.
STORE_WAITS = 2 * STORE_RETRY_WINDOW
HEARTBEAT = timedelta(seconds=10)
LOCAL = timedelta(seconds=30)
IDLE_FOR = timedelta(hours=1)
HANDLED_KEPT = 200


@workflow.defn(name=SessionLoop.WORKFLOW)
class SessionWorkflow:
    @workflow.init
    def __init__(self, params: SessionInput) -> None:
        # From the input here, not in `run`: a start signal is handled before `run` begins.
        self._pending: list[str] = list(params.pending)
        self._handled: list[str] = list(params.handled)
        # The cancellable part of the running turn: its reason/act steps (not the bookkeeping
        # around them, which must always complete).
        self._steps: asyncio.Task[None] | None = None
        self._turn_id: str | None = None
        self._cancelled = False
        # Tool calls of the running turn that wait for a person, and the decisions made.
        self._awaiting: set[str] = set()
        self._decisions: dict[str, ApprovalDecision] = {}
        # Client-side tool calls of the running turn that wait for the client's result, and the
        # results the API has stored (their statuses: the results are in PostgreSQL).
        self._awaiting_results: set[str] = set()
        self._results: dict[str, ToolOutcome] = {}
        # A forked session's first run (an Opswald replay): the turn it forks, and its step gate.
        self._fork: ForkStart | None = params.fork
        self._gate = _Gate.of(params.fork) if params.fork is not None else None

    @workflow.signal(name=SessionLoop.NEW_MESSAGE)
    def new_message(self, message_id: str) -> None:
        if message_id not in self._pending and message_id not in self._handled:
            self._pending.append(message_id)

    @workflow.update(name=SessionLoop.CANCEL_TURN)
    def cancel_turn(self) -> bool:
        """Stops the running turn; False when no turn runs."""
        if self._steps is None or self._steps.done():
            return False
        self._cancelled = True
        self._steps.cancel()
        return True

    @workflow.update(name=SessionLoop.REPLAY_CONTROL)
    def replay_control(self, control: ReplayControl) -> ReplayState:
        """A fork's controls (docs/replay.md, "Controls"): the gate before each of its steps moves;
        `stop` cancels its turn. Checked by the validator first, so a refused control changes
        nothing and is not in the history."""
        gate = self._gate
        assert gate is not None
        if control.action == "play":
            gate.run_to = None
        elif control.action == "pause":
            # Before the given step, or before the next one (the steps let through run on). A pause
            # never lets a held step through: it only brings the limit nearer.
            target = control.step - 1 if control.step is not None else gate.current_step
            gate.run_to = target if gate.run_to is None else min(gate.run_to, target)
        elif control.action == "step":
            gate.run_to = gate.current_step + 1
        elif control.action == "jump":
            assert control.step is not None
            gate.run_to = control.step - 1
        else:
            self._stop_replay()
        return gate.state()

    @replay_control.validator
    def _check_control(self, control: ReplayControl) -> None:
        gate = self._gate
        if gate is None or gate.finished:
            raise ApplicationError("the replay's turn has finished", type=CONTROL_REFUSED)
        if gate.stopped:
            raise ApplicationError("the replay has been stopped", type=CONTROL_REFUSED)
        if control.action == "jump" and control.step is None:
            raise ApplicationError("jump needs the step to go to", type=CONTROL_REFUSED)
        if (
            control.action in ("jump", "pause")
            and control.step is not None
            and control.step <= gate.current_step
        ):
            # A step that has run cannot be run again here: a new replay forks from it.
            raise ApplicationError(
                f"step {control.step} has already run (the replay is at step {gate.current_step}); "
                "start a new replay with fork_from_step to run it again",
                type=CONTROL_REFUSED,
            )

    @workflow.signal(name=SessionLoop.STOP_REPLAY)
    def stop_replay(self) -> None:
        if self._gate is not None and not self._gate.finished:
            self._stop_replay()

    def _stop_replay(self) -> None:
        assert self._gate is not None
        self._gate.stopped = True
        self._cancelled = True
        if self._steps is not None and not self._steps.done():
            self._steps.cancel()

    @workflow.query(name=SessionLoop.REPLAY_STATE)
    def replay_state(self) -> ReplayState | None:
        return self._gate.state() if self._gate is not None else None

    @workflow.update(name=SessionLoop.RESOLVE_APPROVAL)
    def resolve_approval(self, decision: ApprovalDecision) -> ApprovalDecision:
        """A person's answer to a tool call that waits for approval; the call then runs or is denied."""
        self._decisions[decision.tool_call_id] = decision
        return decision

    @resolve_approval.validator
    def _check_approval(self, decision: ApprovalDecision) -> None:
        # A call not awaited yet is accepted: after a worker restart the update can arrive before
        # the replayed workflow has reached the wait (the API has checked the call asked for one).
        if decision.tool_call_id in self._decisions:
            raise ApplicationError("this tool call was already decided", type=APPROVAL_DECIDED)

    @workflow.update(name=SessionLoop.DELIVER_TOOL_RESULTS)
    def deliver_tool_results(self, delivered: ToolResultsDelivered) -> int:
        """Client-side calls whose results the API has stored: they go on without running anything.
        A call's first delivery counts (a repeated request sends it again). As for approvals, a
        delivery may come before the replayed workflow has reached the wait: it is kept for it.
        One for another turn than the running one is ignored (0): it cannot answer this turn's calls."""
        if delivered.turn_id is not None and delivered.turn_id != self._turn_id:
            return 0
        for outcome in delivered.outcomes:
            self._results.setdefault(outcome.tool_call_id, outcome)
        return len(delivered.outcomes)

    @workflow.query(name=SessionLoop.PENDING_APPROVALS)
    def pending_approvals(self) -> list[str]:
        return sorted(self._awaiting)

    @workflow.query(name=SessionLoop.PENDING_TOOL_RESULTS)
    def pending_tool_results(self) -> list[str]:
        return sorted(self._awaiting_results)

    @workflow.query(name=SessionLoop.CURRENT_TURN)
    def current_turn(self) -> str | None:
        return self._turn_id

    @workflow.run
    async def run(self, params: SessionInput) -> None:
        if not await self._wait_for_message():
            return  # idle long enough: the next message starts the workflow again
        message_id = self._pending.pop(0)
        # Handled from the moment it is taken: a repeat signal during its turn must not queue it.
        self._handled = [*self._handled, message_id][-HANDLED_KEPT:]
        earlier = await self._run_turn(params.session_id, message_id)
        self._turn_id = None
        forked = self._fork is not None and self._fork.message_id == message_id
        if earlier is not None:
            # An earlier message's signal has not arrived (or was lost): it goes first, this one
            # right after. Nothing of the abandoned turn was stored.
            taken = (earlier, message_id)
            self._handled = [m for m in self._handled if m not in taken]
            self._pending = [*taken, *(m for m in self._pending if m not in taken)]
        await workflow.wait_condition(workflow.all_handlers_finished)
        if forked and earlier is None and not self._pending:
            # A fork's run ends with its turn (a golden test run awaits it as a child workflow);
            # a later message starts the session's workflow again, as after an idle hour.
            return
        workflow.continue_as_new(
            SessionInput(
                session_id=params.session_id,
                agent_id=params.agent_id,
                pending=self._pending,
                handled=self._handled,
            )
        )

    async def _wait_for_message(self) -> bool:
        try:
            await workflow.wait_condition(lambda: bool(self._pending), timeout=IDLE_FOR)
        except TimeoutError:
            return False
        return True

    def _new_id(self) -> str:
        now_ms = int(workflow.now().timestamp() * 1000)
        return str(uuid7_at(now_ms, workflow.random().getrandbits(74)))

    async def _run_turn(self, session_id: str, message_id: str) -> str | None:
        """Runs the turn that answers `message_id`; returns instead the id of an earlier message that
        must be answered first, when the turn's first step finds one."""
        turn_id = self._turn_id = self._new_id()
        gate = self._gate if self._fork is not None and self._fork.message_id == message_id else None
        # A fork stopped before its turn began still runs the turn's bookkeeping, cancelled at once.
        self._cancelled = gate is not None and gate.stopped
        started = workflow.now()
        # The turn's bookkeeping (its opening events, each act's completion) goes into the steps'
        # own transactions, not activities of its own; finish_turn stores what no step got to.
        turn = _Turn(session_id=session_id, turn_id=turn_id, message_id=message_id, gate=gate)
        if gate is not None and self._fork is not None:
            # The fork's earlier steps are the copied messages: its first step is the fork step's.
            turn.first_iteration = self._fork.iteration
            turn.iterations = self._fork.iteration - 1
        self._steps = asyncio.create_task(self._run_steps(turn))
        try:
            await self._steps
        except asyncio.CancelledError:
            if not self._cancelled:
                raise  # the workflow itself is being cancelled
            turn.outcome = "cancelled"
        except ActivityError as exc:
            if self._cancelled:  # the cancel reached the activity, which reports it as its error
                turn.outcome = "cancelled"
            else:
                turn.outcome = "failed"
                turn.error_code, turn.error = _failure(exc)
                turn.notice = self._new_id()
        finally:
            self._steps = None
            if gate is not None:
                gate.finished = True
        if turn.earlier is not None:
            if not self._cancelled:
                return turn.earlier
            # Cancelled while its first step looked: the cancel is for this message's turn, which
            # ends cancelled (its opening stored by finish_turn) instead of being put back.
            turn.outcome = "cancelled"
        end = TurnEnd(
            session_id=session_id,
            turn_id=turn_id,
            input_message_id=message_id,
            outcome=turn.outcome,
            iterations=turn.iterations,
            duration_ms=int((workflow.now() - started).total_seconds() * 1000),
            error=turn.error,
            error_code=turn.error_code,
            notice_message_id=turn.notice,
            act=turn.act,
            fork=gate is not None,
        )
        try:
            await workflow.execute_local_activity(
                SessionLoop.FINISH_TURN, end, start_to_close_timeout=LOCAL, retry_policy=LOCAL_RETRY
            )
        except (ActivityError, ApplicationError):
            # (A local activity's failure arrives as its ApplicationError, without the ActivityError.)
            # The database has been away longer than the quick retries: every turn ends with its
            # end event, so keep at it for as long as a step waits for the database.
            await workflow.execute_activity(
                SessionLoop.FINISH_TURN,
                end,
                start_to_close_timeout=LOCAL + STORE_WAITS,
                schedule_to_close_timeout=STORE_RETRY_WINDOW,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=STORE_RETRY,
            )
        return None

    async def _run_steps(self, turn: _Turn) -> None:
        """reason -> act -> reason ... until a reply without tool calls or the step limit."""
        while True:
            if turn.max_iterations is not None and turn.iterations >= turn.max_iterations:
                turn.outcome, turn.error_code = "failed", "max_iterations"
                turn.error = f"the turn reached the agent's limit of {turn.max_iterations} reasoning steps"
                return
            turn.iterations += 1
            if turn.gate is not None:
                await self._pass(turn.gate, turn.gate.take(1)[0])
            reply = await self._reason(turn)
            if reply.earlier_message_id is not None:  # nothing stored: the turn is given up
                turn.earlier = reply.earlier_message_id
                return
            if reply.session_ended:  # nothing stored: the turn ends cancelled, as the end asked
                turn.outcome = "cancelled"
                return
            turn.act = None  # stored by that step
            if reply.max_iterations is not None:
                turn.max_iterations = reply.max_iterations
            if not reply.tool_calls:
                return
            outcomes = await self._act(turn, reply)
            act = ActCompleted(
                session_id=turn.session_id, turn_id=turn.turn_id, iteration=turn.iterations, outcomes=outcomes
            )
            turn.act = act  # stored by the next step, or by finish_turn if none comes

    async def _reason(self, turn: _Turn) -> ReasonResult:
        result: ReasonResult = await workflow.execute_activity(
            SessionLoop.REASON,
            ReasonInput(
                session_id=turn.session_id,
                turn_id=turn.turn_id,
                input_message_id=turn.message_id,
                iteration=turn.iterations,
                message_id=self._new_id(),
                open_turn=turn.iterations == turn.first_iteration,
                act=turn.act,
            ),
            result_type=ReasonResult,
            start_to_close_timeout=timedelta(minutes=10) + STORE_WAITS,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=LLM_RETRY,
            # A cancelled step must have stopped before the turn ends: no reply stored after it.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return result

    async def _act(self, turn: _Turn, reply: ReasonResult) -> list[ToolOutcome]:
        # A fork's tool calls are steps of their own, numbered in the reply's order.
        steps = turn.gate.take(len(reply.tool_calls)) if turn.gate is not None else None
        calls = [
            self._call(
                turn.session_id,
                turn.turn_id,
                turn.iterations,
                reply.message_id,
                call,
                step=steps[i] if steps is not None else None,
                gate=turn.gate,
            )
            for i, call in enumerate(reply.tool_calls)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        if self._cancelled:
            raise asyncio.CancelledError
        outcomes: list[ToolOutcome] = []
        for call, result in zip(reply.tool_calls, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                # Retries exhausted (not a tool error, which is a result): the next `reason`
                # gives the call a synthetic error result.
                outcomes.append(ToolOutcome(tool_call_id=call.id, status="error"))
            else:
                outcomes.append(result)
        return outcomes

    async def _call(
        self,
        session_id: str,
        turn_id: str,
        iteration: int,
        message_id: str,
        call: ToolCallRef,
        *,
        step: int | None = None,
        gate: _Gate | None = None,
    ) -> ToolOutcome:
        """One tool call: after a person's decision if it needs one, then run (or denied) as an
        activity. A client-side call waits for the client's result instead, which the API stores;
        only a call left without one past its timeout takes an activity (to store that). A fork's
        call first waits at its step's gate."""
        if gate is not None and step is not None:
            await self._pass(gate, step)
        if call.client_side:
            delivered = await self._client_result(call)
            if delivered is not None:
                return delivered
        approval = await self._approval(call) if call.require_approval else None
        params = ToolInput(
            session_id=session_id,
            turn_id=turn_id,
            iteration=iteration,
            message_id=message_id,
            tool_call_id=call.id,
            approval=approval,
            client_timeout_s=call.result_timeout_s if call.client_side else None,
        )
        if call.local:
            # A short pure tool: one attempt inside this workflow task, with no task-queue round
            # trip (docs/loop.md). The tool's own failure is a result; an exception here is the
            # database or a timeout, and the regular activity below then runs it (again: it is
            # pure) with a heartbeat and an outage waited out. A worker dying meanwhile fails the
            # workflow task, and the next one runs the local attempt again; the step's keys store
            # its result once.
            try:
                local: ToolOutcome = await workflow.execute_local_activity(
                    SessionLoop.RUN_TOOL,
                    params,
                    result_type=ToolOutcome,
                    start_to_close_timeout=LOCAL_TOOL_LIMIT,
                    retry_policy=LOCAL_ONCE,
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                )
                return local
            except (ActivityError, ApplicationError) as exc:
                if self._cancelled or isinstance(exc.cause, CancelledError):
                    raise  # the turn's or the workflow's cancel, not a failure: nothing more runs
        outcome: ToolOutcome = await workflow.execute_activity(
            SessionLoop.RUN_TOOL,
            params,
            result_type=ToolOutcome,
            # The tool's own timeout is enforced inside; this only catches a stuck worker.
            start_to_close_timeout=timedelta(seconds=call.timeout_s + 30) + STORE_WAITS,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=TOOL_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return outcome

    async def _pass(self, gate: _Gate, step: int) -> None:
        """A fork's step waits here until the controls let it through (a condition: nothing runs
        meanwhile, and a worker restart replays to the same wait)."""
        gate.waiting.add(step)
        try:
            await workflow.wait_condition(lambda: gate.stopped or gate.allows(step))
        finally:
            gate.waiting.discard(step)
        if gate.stopped:
            raise asyncio.CancelledError
        gate.current_step = max(gate.current_step, step)

    async def _approval(self, call: ToolCallRef) -> ApprovalDecision:
        """Waits durably (a timer in the history: restarts and days change nothing) for the
        `resolve_approval` update, or denies when the agent's approval timeout passes first."""
        self._awaiting.add(call.id)
        limit = timedelta(seconds=call.approval_timeout_s) if call.approval_timeout_s else None
        try:
            await workflow.wait_condition(lambda: call.id in self._decisions, timeout=limit)
        except TimeoutError:
            self._decisions[call.id] = ApprovalDecision(
                tool_call_id=call.id,
                decision="deny",
                reason=f"nobody approved it within {call.approval_timeout_s:g} s",
                decided_by="timeout",
            )
        finally:
            self._awaiting.discard(call.id)
        return self._decisions[call.id]

    async def _client_result(self, call: ToolCallRef) -> ToolOutcome | None:
        """Waits durably, as for an approval (a condition and a timer in the history: no activity
        runs meanwhile, and worker restarts change nothing), for the `deliver_tool_results` update;
        None when the call's timeout passes first."""
        self._awaiting_results.add(call.id)
        limit = timedelta(seconds=call.result_timeout_s) if call.result_timeout_s else None
        try:
            await workflow.wait_condition(lambda: call.id in self._results, timeout=limit)
        except TimeoutError:
            return None
        finally:
            self._awaiting_results.discard(call.id)
        return self._results[call.id]


@dataclass
class _Gate:
    """A fork's steps: which have been let through, which wait, and how far they may go."""

    current_step: int  # the last step let through (the steps before the fork count as run)
    next_step: int  # the number the next step takes
    run_to: int | None  # the last step that may run without another control (None: any)
    waiting: set[int]
    stopped: bool = False
    finished: bool = False

    @classmethod
    def of(cls, fork: ForkStart) -> _Gate:
        # Interactive: it holds before its first step until a control moves it.
        run_to = fork.step - 1 if fork.interactive else None
        return cls(current_step=fork.step - 1, next_step=fork.step, run_to=run_to, waiting=set())

    def take(self, count: int) -> list[int]:
        taken = list(range(self.next_step, self.next_step + count))
        self.next_step += count
        return taken

    def allows(self, step: int) -> bool:
        return self.run_to is None or step <= self.run_to

    def state(self) -> ReplayState:
        held = [s for s in self.waiting if not self.allows(s)]
        return ReplayState(
            current_step=self.current_step,
            holding_at=min(held) if held and not self.stopped else None,
            run_to=self.run_to,
            stopped=self.stopped,
            finished=self.finished,
        )


@dataclass
class _Turn:
    session_id: str
    turn_id: str
    message_id: str
    gate: _Gate | None = None  # a fork's turn: its steps' gate
    first_iteration: int = 1  # a fork's turn starts at its fork step
    max_iterations: int | None = None  # known from the first step on
    act: ActCompleted | None = None  # completed, its completion not stored yet
    outcome: TurnOutcome = "completed"
    iterations: int = 0
    error: str | None = None
    error_code: str | None = None
    notice: str | None = None  # id of the agent message that tells the user what failed
    earlier: str | None = None  # an earlier message to answer first: this turn is given up


def _failure(exc: ActivityError) -> tuple[str, str]:
    """(error_code, message for the user) of a reasoning step that failed for good."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.details:
        try:
            failure = msgspec.convert(cause.details[0], LlmFailure)
        except msgspec.ValidationError:
            return "llm_error", cause.message
        return failure.kind, failure.message
    return "llm_error", "the model call did not complete"
