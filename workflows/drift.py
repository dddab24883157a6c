"""`DriftWorkflow`: one run of drift detection, started by the `drift-detection` schedule every
`DRIFT_INTERVAL` (services/drift.py makes the schedule; docs/drift.md).

The windows end at the time the run was scheduled for (the schedule's `TemporalScheduledStartTime`),
or at the input's `window_end` (a test, an operator), never at the time an activity happens to run:
so a retried activity, or the run replayed on another worker, tests the same windows and finds the
alerts it already wrote. The accounts with traffic are listed a page at a time (a cursor, so no
activity result has to hold every account), each page tested by one activity (a batch retried
re-tests only its accounts; the alerts are idempotent)."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from core.durability import STORE_RETRY, STORE_RETRY_WINDOW
    from core.schemas.drift import (
        DriftBatchInput,
        DriftBatchResult,
        DriftLoop,
        DriftOwners,
        DriftOwnersInput,
        DriftScheduleInput,
        DriftScheduleResult,
    )

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
# Each step waits out a database outage inside its attempt (activities/persist.py, as the turns'
# and replays' store steps do), heartbeating meanwhile; these retries cover a worker that dies, and
# the heartbeat timeout, not the step's limit, is what notices one.
STEP_LIMIT = 2 * STORE_RETRY_WINDOW + timedelta(minutes=30)
HEARTBEAT = timedelta(minutes=1)


@workflow.defn(name=DriftLoop.WORKFLOW)
class DriftWorkflow:
    @workflow.run
    async def run(self, params: DriftScheduleInput) -> DriftScheduleResult:
        window_end = (params.window_end or _scheduled_for() or workflow.now()).replace(microsecond=0)
        size = max(1, params.batch_size)
        tested = created = owners = 0
        after: str | None = None
        # The accounts page by page (a cursor: the last id of the page before), each page tested by
        # one activity: no activity result holds every account (Temporal's payload limit).
        while True:
            page: DriftOwners = await workflow.execute_activity(
                DriftLoop.LIST_OWNERS,
                DriftOwnersInput(window_end=window_end, after=after, limit=size),
                result_type=DriftOwners,
                start_to_close_timeout=STEP_LIMIT,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=STORE_RETRY,
            )
            if page.owner_ids:
                batch: DriftBatchResult = await workflow.execute_activity(
                    DriftLoop.DETECT,
                    DriftBatchInput(owner_ids=page.owner_ids, window_end=window_end),
                    result_type=DriftBatchResult,
                    start_to_close_timeout=STEP_LIMIT,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=STORE_RETRY,
                )
                owners += len(page.owner_ids)
                tested += batch.groups_tested
                created += batch.alerts_created
            if len(page.owner_ids) < size:  # the last page
                break
            after = page.owner_ids[-1]
        return DriftScheduleResult(
            window_end=window_end, owners=owners, groups_tested=tested, alerts_created=created
        )


def _scheduled_for() -> datetime | None:
    return workflow.info().typed_search_attributes.get(SCHEDULED_START)
