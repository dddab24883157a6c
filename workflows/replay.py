"""`ReplayWorkflow`: one replay run with per-span mutations (`replay-{id}`, docs/replay.md).

plan -> the mutated LLM spans re-executed, SPANS_AT_ONCE at a time, each its own activity -> finish
(the result trace and the outcome). The input is the replay's id; activities read the rest from
PostgreSQL. A worker killed mid-replay changes nothing: Temporal retries the step on another worker,
and a step whose answer was stored already does not call the model again.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from core.durability import LLM_RETRY, STORE_RETRY, STORE_RETRY_WINDOW
    from core.schemas.replays import (
        SPANS_AT_ONCE,
        ReplayFinishInput,
        ReplayInput,
        ReplayLoop,
        ReplayOutcome,
        ReplayPlan,
        ReplaySpanInput,
        ReplaySpanResult,
    )

# Each step waits out a database outage inside its attempt; the heartbeat timeout, not this, is
# what notices a dead worker.
STEP_LIMIT = 2 * STORE_RETRY_WINDOW + timedelta(minutes=10)
HEARTBEAT = timedelta(seconds=10)


@workflow.defn(name=ReplayLoop.WORKFLOW)
class ReplayWorkflow:
    @workflow.run
    async def run(self, params: ReplayInput) -> ReplayOutcome:
        plan: ReplayPlan = await workflow.execute_activity(
            ReplayLoop.PLAN,
            params,
            result_type=ReplayPlan,
            start_to_close_timeout=STEP_LIMIT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=STORE_RETRY,
        )
        failures: dict[str, str] = {}
        # A bounded number of calls at once (a provider's rate limit); deterministic: the
        # workflow's own event loop hands the semaphore on in a replayable order.
        gate = asyncio.Semaphore(SPANS_AT_ONCE)

        async def run_span(span_id: str) -> None:
            async with gate:
                await call_span(span_id)

        async def call_span(span_id: str) -> None:
            try:
                await workflow.execute_activity(
                    ReplayLoop.RUN_SPAN,
                    ReplaySpanInput(replay_id=params.replay_id, span_id=span_id),
                    result_type=ReplaySpanResult,
                    start_to_close_timeout=STEP_LIMIT,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=LLM_RETRY,
                )
            except ActivityError as exc:
                # The span's diff says why; the other spans go on.
                cause = exc.cause
                failures[span_id] = cause.message if isinstance(cause, FailureError) else exc.message

        await asyncio.gather(*(run_span(s) for s in plan.span_ids))
        outcome: ReplayOutcome = await workflow.execute_activity(
            ReplayLoop.FINISH,
            ReplayFinishInput(replay_id=params.replay_id, failures=failures),
            result_type=ReplayOutcome,
            start_to_close_timeout=STEP_LIMIT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=STORE_RETRY,
        )
        return outcome
