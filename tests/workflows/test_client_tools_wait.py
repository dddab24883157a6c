"""A client-side tool call waiting for the client's result, on Temporal's time-skipping test server
with stand-in activities (tests/workflows/test_session_control.py's): no activity runs while it
waits, a day of waiting changes nothing, the result (delivered by the API as the
`deliver_tool_results` update) lets the turn go on, the timeout gives the call its error result
through `run_tool`, an early or repeated delivery is harmless (one for an earlier turn answers
nothing of a later turn's), and a cancel ends the wait."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from core.schemas.turns import ReasonInput, ReasonResult, ToolInput, ToolOutcome, ToolResultsDelivered
from tests.workflows.test_session_control import Stand, _call, _eventually, _held, session_loop

DAY = 86400.0


class ClientAndPlainCall(Stand):
    """The first step asks for a client-side call (`call_c`) and a plain one (`call_b`); a
    `run_tool` for `call_c` (its timeout) answers `timeout`, as the real one does."""

    def __init__(self, timeout_s: float | None = DAY, *, hold_reason: bool = False) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self.release_reason = asyncio.Event()
        if not hold_reason:
            self.release_reason.set()

    async def answer(self, params: ReasonInput) -> ReasonResult:
        reply = await super().answer(params)
        if params.iteration == 1:
            await _held(self.release_reason)
            reply.tool_calls = [
                _call("call_c", client_side=True, result_timeout_s=self.timeout_s),
                _call("call_b"),
            ]
        return reply

    async def tool(self, params: ToolInput) -> ToolOutcome:
        if params.client_timeout_s is not None:
            return ToolOutcome(tool_call_id=params.tool_call_id, status="timeout")
        return await super().tool(params)


def _delivered(status: str = "success", turn_id: str | None = None) -> ToolResultsDelivered:
    outcomes = [ToolOutcome(tool_call_id="call_c", status=status)]  # type: ignore[arg-type]
    return ToolResultsDelivered(outcomes=outcomes, turn_id=turn_id)


async def test_a_day_of_waiting_then_the_result_goes_on_without_running_anything(
    env: WorkflowEnvironment,
) -> None:
    stand = ClientAndPlainCall(timeout_s=2 * DAY)
    async with session_loop(env, stand, ["m1"]) as handle:
        await stand.until(lambda: "done call_b" in stand.log, "the plain call")
        await _eventually(lambda: handle.query("pending_tool_results"), ["call_c"])
        await env.sleep(timedelta(days=1))
        assert await handle.query("pending_tool_results") == ["call_c"]
        assert [t.tool_call_id for t in stand.tool_inputs] == ["call_b"], "nothing runs for the wait"
        assert len(stand.reasons) == 1 and not stand.ends
        assert await handle.execute_update("deliver_tool_results", _delivered(), result_type=int) == 1
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
        await _eventually(lambda: handle.query("pending_tool_results"), [])
    assert [t.tool_call_id for t in stand.tool_inputs] == ["call_b"], "the client's call never runs here"
    act = stand.reasons[1].act
    assert act is not None
    assert sorted(act.outcomes, key=lambda o: o.tool_call_id) == [
        ToolOutcome(tool_call_id="call_b", status="success"),
        ToolOutcome(tool_call_id="call_c", status="success"),
    ]
    assert stand.ends[0].outcome == "completed"


async def test_the_timeout_stores_the_calls_error_result_and_the_turn_goes_on(
    env: WorkflowEnvironment,
) -> None:
    stand = ClientAndPlainCall(timeout_s=DAY)
    async with session_loop(env, stand, ["m1"]) as handle:
        await _eventually(lambda: handle.query("pending_tool_results"), ["call_c"])
        await env.sleep(timedelta(hours=23))
        assert await handle.query("pending_tool_results") == ["call_c"]
        # Just past the day (not over an hour past it: the next run, idle, would end after one).
        await env.sleep(timedelta(hours=1, minutes=1))
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    call_c = next(t for t in stand.tool_inputs if t.tool_call_id == "call_c")
    assert call_c.client_timeout_s == DAY and call_c.approval is None
    act = stand.reasons[1].act
    assert act is not None
    assert ToolOutcome(tool_call_id="call_c", status="timeout") in act.outcomes
    assert stand.ends[0].outcome == "completed"


async def test_a_delivery_before_the_wait_counts_and_a_repeated_one_changes_nothing(
    env: WorkflowEnvironment,
) -> None:
    # After a worker restart the update can reach the workflow before its replay reaches the wait;
    # a client that retries its request delivers again.
    stand = ClientAndPlainCall(hold_reason=True)
    async with session_loop(env, stand, ["m1"]) as handle:
        await stand.until(lambda: len(stand.reasons) == 1, "the first step")
        assert await handle.query("pending_tool_results") == []
        await handle.execute_update("deliver_tool_results", _delivered("error"), result_type=int)
        await handle.execute_update("deliver_tool_results", _delivered("success"), result_type=int)
        stand.release_reason.set()
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
    assert [t.tool_call_id for t in stand.tool_inputs] == ["call_b"]
    act = stand.reasons[1].act
    assert act is not None
    assert ToolOutcome(tool_call_id="call_c", status="error") in act.outcomes, "the first delivery counts"


async def test_a_delivery_for_an_earlier_turn_does_not_answer_a_later_turns_call(
    env: WorkflowEnvironment,
) -> None:
    # A provider may give a later turn's call the id of an earlier one's (`call_c` in every turn
    # here); a client repeating its request for the earlier call (the API accepts it again and
    # delivers it again, naming that call's turn) must not answer the later turn's call.
    stand = ClientAndPlainCall()
    async with session_loop(env, stand, ["m1"]) as handle:
        await _eventually(lambda: handle.query("pending_tool_results"), ["call_c"])
        first_turn = stand.reasons[0].turn_id
        await handle.execute_update("deliver_tool_results", _delivered(turn_id=first_turn), result_type=int)
        await stand.until(lambda: len(stand.ends) == 1, "the first turn's end")
        await _eventually(lambda: handle.query("current_turn"), None)
        # The repeat reaches the idle run, then during the next turn's first step.
        repeat = _delivered(turn_id=first_turn)
        assert await handle.execute_update("deliver_tool_results", repeat, result_type=int) == 0
        stand.release_reason.clear()
        await handle.signal("new_message", "m2")
        await stand.until(lambda: len(stand.reasons) == 3, "the second turn's first step")
        assert await handle.execute_update("deliver_tool_results", repeat, result_type=int) == 0
        stand.release_reason.set()
        await _eventually(lambda: handle.query("pending_tool_results"), ["call_c"])
        assert len(stand.ends) == 1, "the second turn waits for its own call's result"
        second_turn = stand.reasons[2].turn_id
        assert second_turn != first_turn
        await handle.execute_update("deliver_tool_results", _delivered(turn_id=second_turn), result_type=int)
        await stand.until(lambda: len(stand.ends) == 2, "the second turn's end")


async def test_cancel_while_a_call_waits_for_the_client(env: WorkflowEnvironment) -> None:
    stand = ClientAndPlainCall(timeout_s=None)  # no limit: only the cancel ends the wait
    async with session_loop(env, stand, ["m1"]) as handle:
        await _eventually(lambda: handle.query("pending_tool_results"), ["call_c"])
        assert await handle.execute_update("cancel_turn", result_type=bool) is True
        await stand.until(lambda: len(stand.ends) == 1, "the turn's end")
        await _eventually(lambda: handle.query("pending_tool_results"), [])
    assert [t.tool_call_id for t in stand.tool_inputs] == ["call_b"], "the waiting call never ran"
    assert len(stand.reasons) == 1
    [end] = stand.ends
    assert (end.outcome, end.iterations, end.act) == ("cancelled", 1, None)
