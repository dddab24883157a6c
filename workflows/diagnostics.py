"""`StackCheckWorkflow`: proves the whole chain (client -> Temporal -> worker -> Postgres and Redis)
works, with the shared data converter. `everloop check` and the tests run it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.schemas.diagnostics import StackCheckInput, StackCheckResult


@workflow.defn(name="StackCheck")
class StackCheckWorkflow:
    @workflow.run
    async def run(self, params: StackCheckInput) -> StackCheckResult:
        result: StackCheckResult = await workflow.execute_activity(
            "check_backing_services",
            params,
            result_type=StackCheckResult,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return result
