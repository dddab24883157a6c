"""The delivery workflow on Temporal's time-skipping test server, with the real default schedule
(WEBHOOK_RETRY_SCHEDULE's default, over a day): the attempts come at the documented times, a
success or a final answer stops the series, and the last attempt is told it is the last. The
attempt activity is a stand-in under the real name (tests/loop/test_webhooks.py covers the rest)."""

from __future__ import annotations

import itertools
import uuid

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.schemas.webhooks import AttemptInput, AttemptResult, DeliveryInput, WebhookLoop
from core.settings import WEBHOOK_RETRY_SCHEDULE_DEFAULT
from core.temporal import workflow_runner
from workflows.webhook_delivery import WebhookDeliveryWorkflow

DEFAULT_SCHEDULE = list(WEBHOOK_RETRY_SCHEDULE_DEFAULT)


class Receiver:
    """Answers `retry` until attempt `succeed_on` (1-based; 0: never), recording when each came."""

    def __init__(self, env: WorkflowEnvironment, succeed_on: int) -> None:
        self.env = env
        self.succeed_on = succeed_on
        self.calls: list[tuple[float, AttemptInput]] = []

    @activity.defn(name=WebhookLoop.ATTEMPT)
    async def attempt(self, params: AttemptInput) -> AttemptResult:
        now = (await self.env.get_current_time()).timestamp()
        self.calls.append((now, params))
        if len(self.calls) == self.succeed_on:
            return AttemptResult(outcome="done", status_code=200)
        return AttemptResult(outcome="retry" if params.next_wait_s is not None else "done", status_code=500)


async def run(env: WorkflowEnvironment, receiver: Receiver, schedule: list[float]) -> int:
    task_queue = f"webhooks-{uuid.uuid4().hex}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[WebhookDeliveryWorkflow],
        workflow_runner=workflow_runner(),
        activities=[receiver.attempt],
    ):
        attempts: int = await env.client.execute_workflow(
            WebhookLoop.WORKFLOW,
            DeliveryInput(delivery_id=str(uuid.uuid4()), series=1, schedule_s=schedule),
            id=WebhookLoop.workflow_id(str(uuid.uuid4()), 1),
            task_queue=task_queue,
            result_type=int,
        )
    return attempts


def test_the_default_schedule_spans_more_than_a_day() -> None:
    assert DEFAULT_SCHEDULE == [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    assert sum(DEFAULT_SCHEDULE) > 86400


async def test_a_receiver_that_always_fails_gets_every_attempt_on_schedule(env: WorkflowEnvironment) -> None:
    receiver = Receiver(env, succeed_on=0)
    attempts = await run(env, receiver, DEFAULT_SCHEDULE)
    assert attempts == len(DEFAULT_SCHEDULE) == len(receiver.calls)
    times = [t for t, _ in receiver.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, wait in zip(gaps, DEFAULT_SCHEDULE[1:], strict=True):
        assert wait <= gap < wait + 5, (gaps, DEFAULT_SCHEDULE)
    assert times[-1] - times[0] > 86400
    # Each attempt is told the wait before the next; the last that there is none.
    assert [c.next_wait_s for _, c in receiver.calls] == [*DEFAULT_SCHEDULE[1:], None]


async def test_a_success_ends_the_series(env: WorkflowEnvironment) -> None:
    receiver = Receiver(env, succeed_on=3)
    assert await run(env, receiver, DEFAULT_SCHEDULE) == 3
    assert len(receiver.calls) == 3
