"""Which worker process ran what, read from what Temporal records (the project records nothing of
its own about it).

A worker is known by its Temporal client's identity, `<pid>@<host>` (the SDK's default; `everloop
worker` sets none), so a process started by tests/processes.py is known by its pid. A workflow's
history names the worker that completed each workflow task, and for each activity the identity and
attempt of the attempt that ended it (Temporal writes an activity's started event only then); a
running workflow's description names the worker running each pending activity."""

from __future__ import annotations

import asyncio
import socket

import msgspec
from temporalio.api.enums.v1 import PendingActivityState, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode


def identity(pid: int) -> str:
    """The Temporal identity of the worker process `pid` on this machine."""
    return f"{pid}@{socket.gethostname()}"


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """An activity of a workflow run: its type, and the attempt that ended it and on which worker."""

    activity: str
    attempt: int
    worker: str


class Placement(msgspec.Struct, kw_only=True):
    """What ran where for one session's workflow, every run of it (a turn continues as new)."""

    steps: list[Step]
    workflow_tasks: list[str]  # the identity that completed each workflow task


async def placement(client: Client, workflow_id: str) -> Placement:
    steps: list[Step] = []
    workflow_tasks: list[str] = []
    run_id: str | None = None
    while True:  # from the latest run back to the first
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        scheduled = {
            e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        }
        for event in history.events:
            if event.HasField("activity_task_started_event_attributes"):
                started = event.activity_task_started_event_attributes
                steps.append(
                    Step(
                        activity=scheduled[started.scheduled_event_id],
                        attempt=started.attempt,
                        worker=started.identity,
                    )
                )
            elif event.HasField("workflow_task_completed_event_attributes"):
                workflow_tasks.append(event.workflow_task_completed_event_attributes.identity)
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        if not run_id:
            return Placement(steps=steps, workflow_tasks=workflow_tasks)


async def running(client: Client, workflow_id: str, activity: str) -> list[str]:
    """The workers now running an attempt of `activity` for the workflow (none if it is not started)."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return []
        raise
    return [
        pending.last_worker_identity
        for pending in description.raw_description.pending_activities
        if pending.activity_type.name == activity
        and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    ]


async def pollers(client: Client, task_queue: str) -> set[str]:
    """The workers polling `task_queue` for both workflow and activity tasks."""
    seen: list[set[str]] = []
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind
            )
        )
        seen.append({poller.identity for poller in response.pollers})
    return seen[0] & seen[1]


async def until_polling(client: Client, task_queue: str, workers: set[str], timeout: float = 60) -> None:
    """Waits until every one of `workers` polls `task_queue` (so none takes all the work)."""
    async with asyncio.timeout(timeout):
        while not workers <= await pollers(client, task_queue):
            await asyncio.sleep(0.1)
