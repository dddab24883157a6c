"""A turn's Temporal shape without its work, the yardstick for the real loop.

`SessionWorkflow` runs, for a turn with one tool call: `reason`, `run_tool`, `reason`, local
`finish_turn` (the `reason` steps store the turn's opening events and the act's completion); for N
tool calls one after the other, N times `reason`, `run_tool`, then the last `reason` and
`finish_turn`. `BareTurn(N)` runs the same activities, with the same options, as no-ops. Its own
module, importing little: the workflow sandbox re-imports a workflow's module for every run, and the
benchmark module imports the whole application.
"""

from __future__ import annotations

import time
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from core.durability import LLM_RETRY
    from workflows.session import HEARTBEAT, LOCAL, LOCAL_RETRY, TOOL_RETRY

TOOL_TIMEOUT = timedelta(seconds=60 + 30)  # test_math's timeout, plus the worker's margin


class Steps:
    """The no-op activity; it notes when each step started (the worker runs in the benchmark's process)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, float]] = []

    @activity.defn(name="step")
    async def step(self, name: str) -> None:
        self.started.append((name, time.perf_counter()))


@workflow.defn(name="BareTurn")
class BareTurn:
    @workflow.run
    async def run(self, tool_calls: int = 1) -> None:
        for _ in range(tool_calls):
            await self._remote("reason", timedelta(minutes=10), LLM_RETRY)
            await self._remote("run_tool", TOOL_TIMEOUT, TOOL_RETRY)
        await self._remote("reason", timedelta(minutes=10), LLM_RETRY)
        await self._local("finish_turn")

    async def _local(self, name: str) -> None:
        await workflow.execute_local_activity(
            "step", name, start_to_close_timeout=LOCAL, retry_policy=LOCAL_RETRY
        )

    async def _remote(self, name: str, timeout: timedelta, retry: RetryPolicy) -> None:
        await workflow.execute_activity(
            "step",
            name,
            start_to_close_timeout=timeout,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=retry,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
