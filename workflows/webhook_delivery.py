"""`WebhookDeliveryWorkflow`: one delivery's attempt series (`webhook-delivery-{id}-{series}`,
docs/webhooks.md).

Each attempt is one activity (one POST, its outcome stored); between attempts a durable timer
waits the schedule's next wait (WEBHOOK_RETRY_SCHEDULE, given in the input): a worker or the whole
cluster may restart meanwhile and the series goes on where it was. A worker killed mid-attempt is
noticed by the missed heartbeats and the attempt runs again on another worker, with the same
`webhook-id` (receivers see each event at least once and deduplicate on it).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.durability import STORE_RETRY, STORE_RETRY_WINDOW
    from core.schemas.webhooks import AttemptInput, AttemptResult, DeliveryInput, WebhookLoop

# An attempt waits out a database outage inside itself (activities/persist.py); the heartbeat
# timeout, not this, notices a dead worker.
ATTEMPT_LIMIT = 2 * STORE_RETRY_WINDOW + timedelta(minutes=10)
HEARTBEAT = timedelta(seconds=10)


@workflow.defn(name=WebhookLoop.WORKFLOW)
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, params: DeliveryInput) -> int:
        """Returns how many attempts it made."""
        schedule = params.schedule_s or [0.0]
        for index, wait_s in enumerate(schedule):
            if wait_s > 0:
                await workflow.sleep(timedelta(seconds=wait_s))
            last = index == len(schedule) - 1
            result: AttemptResult = await workflow.execute_activity(
                WebhookLoop.ATTEMPT,
                AttemptInput(
                    delivery_id=params.delivery_id,
                    series=params.series,
                    next_wait_s=None if last else schedule[index + 1],
                ),
                result_type=AttemptResult,
                start_to_close_timeout=ATTEMPT_LIMIT,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=STORE_RETRY,
            )
            if result.outcome == "done":
                return index + 1
        return len(schedule)
