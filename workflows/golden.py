"""`GoldenRunWorkflow`: one golden test run (`golden-run-{id}`, docs/golden_tests.md).

plan -> per test, TESTS_AT_ONCE at a time: fork (a new session holding the pinned turn's
conversation up to its user message) -> the forked session's own workflow, the real
SessionWorkflow, as a child that answers the message again with the run's modifications and
returns -> judge -> finish (the counts). The input is the run's id; activities read the rest from
PostgreSQL. A worker killed mid-run changes nothing: Temporal retries the step on another worker,
a fork step finds the fork it stored, a judge step keeps the verdict it stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ChildWorkflowError,
    FailureError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from core.durability import LLM_RETRY, STORE_RETRY, STORE_RETRY_WINDOW
    from core.schemas.golden import (
        TESTS_AT_ONCE,
        GoldenFinished,
        GoldenForked,
        GoldenJudgeInput,
        GoldenLoop,
        GoldenPlan,
        GoldenRunInput,
        GoldenStep,
        GoldenVerdict,
    )
    from core.schemas.turns import SessionLoop

# Each step waits out a database outage inside its attempt; the heartbeat timeout, not this, is
# what notices a dead worker.
STEP_LIMIT = 2 * STORE_RETRY_WINDOW + timedelta(minutes=10)
HEARTBEAT = timedelta(seconds=10)


def _message(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, FailureError):
        return cause.message
    return exc.message if isinstance(exc, FailureError) else str(exc)


@workflow.defn(name=GoldenLoop.WORKFLOW)
class GoldenRunWorkflow:
    @workflow.run
    async def run(self, params: GoldenRunInput) -> GoldenFinished:
        plan: GoldenPlan = await workflow.execute_activity(
            GoldenLoop.PLAN,
            params,
            result_type=GoldenPlan,
            start_to_close_timeout=STEP_LIMIT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=STORE_RETRY,
        )
        # A bounded number of forked turns at once (a provider's rate limit); deterministic: the
        # workflow's own event loop hands the semaphore on in a replayable order.
        gate = asyncio.Semaphore(TESTS_AT_ONCE)

        async def run_test(result_id: str) -> None:
            async with gate:
                await self._test(params.run_id, result_id, plan.timeout_s)

        await asyncio.gather(*(run_test(r) for r in plan.result_ids))
        finished: GoldenFinished = await workflow.execute_activity(
            GoldenLoop.FINISH,
            params,
            result_type=GoldenFinished,
            start_to_close_timeout=STEP_LIMIT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=STORE_RETRY,
        )
        return finished

    async def _test(self, run_id: str, result_id: str, timeout_s: float | None) -> None:
        forked: GoldenForked = await workflow.execute_activity(
            GoldenLoop.FORK,
            GoldenStep(run_id=run_id, result_id=result_id),
            result_type=GoldenForked,
            start_to_close_timeout=STEP_LIMIT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=STORE_RETRY,
        )
        if forked.session is None:
            return  # not forked: its result says why (or it was judged before a retry)
        timed_out, child_error = False, None
        try:
            # The forked session's own workflow (the real loop, the same activities as a live turn):
            # it answers the message and returns. A child: the run waits for it, and a run that is
            # terminated takes its forks with it.
            child = await workflow.start_child_workflow(
                SessionLoop.WORKFLOW,
                forked.session,
                id=SessionLoop.workflow_id(forked.session.session_id),
                task_queue=workflow.info().task_queue,
            )
            if timeout_s is not None:
                try:
                    await workflow.wait_condition(child.done, timeout=timedelta(seconds=timeout_s))
                except TimeoutError:
                    # The test's time limit: the fork's turn is cancelled and its replay ends
                    # `stopped`; the child still returns, and the verdict reads what it stored.
                    timed_out = True
                    # It may have ended meanwhile (the signal then finds no workflow): awaited below.
                    with contextlib.suppress(Exception):
                        await child.signal(SessionLoop.STOP_REPLAY)
            await child
        except (ChildWorkflowError, WorkflowAlreadyStartedError) as exc:
            child_error = _message(exc)
        try:
            await workflow.execute_activity(
                GoldenLoop.JUDGE,
                GoldenJudgeInput(
                    run_id=run_id, result_id=result_id, timed_out=timed_out, child_error=child_error
                ),
                result_type=GoldenVerdict,
                start_to_close_timeout=STEP_LIMIT,
                heartbeat_timeout=HEARTBEAT,
                # The judge calls models (embeddings, the LLM judge): what no retry fixes fails the check.
                retry_policy=LLM_RETRY,
            )
        except ActivityError as exc:
            # Judging failed for good (a model that kept failing): the result is `error`, saying why;
            # the other tests go on.
            await workflow.execute_activity(
                GoldenLoop.JUDGE,
                GoldenJudgeInput(
                    run_id=run_id, result_id=result_id, failure=f"judging failed: {_message(exc)}"
                ),
                result_type=GoldenVerdict,
                start_to_close_timeout=STEP_LIMIT,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=STORE_RETRY,
            )
