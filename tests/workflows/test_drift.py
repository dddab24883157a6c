"""Drift detection as the worker runs it, on the real stack's Temporal: `DriftWorkflow` with an
explicit window end, and the `drift-detection` schedule (made idempotently, triggered now) whose run
tests the windows ending at its scheduled time. Both find the doubled cost that synthetic traffic
sent through `POST /v1/traces` carries; the run's history replays."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleIntervalSpec
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment

from activities.drift import DriftActivities
from core import bus
from core.db import Database
from core.durability import STORE_RETRY_WINDOW
from core.schemas.drift import (
    DriftBatchInput,
    DriftLoop,
    DriftOwnersInput,
    DriftScheduleInput,
    DriftScheduleResult,
)
from core.settings import Settings
from everloop.stack import Endpoints
from everloop.worker import WORKFLOWS, build_worker
from services import drift
from tests import drift_traffic
from tests.api.test_auth_full import As, clear_rate_limits, full_settings, register
from tests.apps import app_for
from tests.conftest import make_settings
from tests.replaying import replay
from tests.workers import Workers, worker_env
from tests.workflows.test_stack_check import HISTORIES
from workflows.drift import SCHEDULED_START, DriftWorkflow


@pytest.fixture
async def client(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as test_client:
        yield test_client


async def test_the_workflow_alerts_on_a_doubled_cost_once(
    client: AsyncTestClient[Litestar],
    temporal_client: Client,
    task_queue: str,
    db: Database,
    endpoints: Endpoints,
    settings: Settings,
) -> None:
    window_end = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    alice = As(client, await register(client))
    await drift_traffic.baseline_and_recent(alice, window_end, baseline_cost=0.01, recent_cost=0.02)
    quiet = As(client, await register(client))  # traffic that does not change: no alert for them
    await drift_traffic.baseline_and_recent(quiet, window_end, baseline_cost=0.01, recent_cost=0.01)

    redis = bus.connect(endpoints.redis_url)
    workflow_id = f"drift-{uuid.uuid4().hex}"
    try:
        async with build_worker(temporal_client, settings, db, redis, task_queue=task_queue):
            result = await temporal_client.execute_workflow(
                DriftWorkflow.run,
                DriftScheduleInput(window_end=window_end),
                id=workflow_id,
                task_queue=task_queue,
            )
            # A second run of the same windows (a retried schedule run) finds what the first wrote;
            # one account a page, it lists the accounts in three pages (the last empty).
            again = await temporal_client.execute_workflow(
                DriftWorkflow.run,
                DriftScheduleInput(window_end=window_end, batch_size=1),
                id=f"{workflow_id}-again",
                task_queue=task_queue,
            )
    finally:
        await redis.aclose()
    assert (result.window_end, result.owners, result.groups_tested) == (window_end, 2, 4)
    assert result.alerts_created == 1
    assert (again.owners, again.alerts_created) == (2, 0)
    paged = await temporal_client.get_workflow_handle(f"{workflow_id}-again").fetch_history()
    steps = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in paged.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert steps == [DriftLoop.LIST_OWNERS, DriftLoop.DETECT] * 2 + [DriftLoop.LIST_OWNERS]

    alerts = (await alice.get("/v1/drift/alerts")).json()
    assert [(a["metric"], a["severity"], a["scope"], a["model"]) for a in alerts] == [
        ("cost", "high", "pipeline-drift", "gpt-drift")
    ]
    assert alerts[0]["windows"]["current"]["end"] == "2026-11-20T12:00:00Z"
    assert (await quiet.get("/v1/drift/alerts?include_resolved=true")).json() == []

    history = await temporal_client.get_workflow_handle(workflow_id).fetch_history()
    # Every step waits out a database outage (activities/persist.py) rather than spending a few
    # attempts on it: no attempt limit, a step limit past the store's retry window (review item 12).
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled
    for step in scheduled:
        assert step.retry_policy.maximum_attempts == 0, step.activity_type.name
        assert step.start_to_close_timeout.ToTimedelta() > STORE_RETRY_WINDOW
        assert step.heartbeat_timeout.ToTimedelta() > timedelta(0)
    await replay(history, WORKFLOWS)
    if os.environ.get("EVERLOOP_RECORD_HISTORIES"):
        (HISTORIES / "drift_detection.json").write_text(history.to_json())


async def test_the_schedule_is_made_once_and_its_run_tests_the_scheduled_windows(
    client: AsyncTestClient[Litestar],
    temporal_client: Client,
    task_queue: str,
    db: Database,
    endpoints: Endpoints,
    settings: Settings,
) -> None:
    now = datetime.now(UTC)
    alice = As(client, await register(client))
    await drift_traffic.baseline_and_recent(alice, now, baseline_cost=0.01, recent_cost=0.02)

    schedule_id = f"drift-detection-{uuid.uuid4().hex}"
    handle = temporal_client.get_schedule_handle(schedule_id)
    redis = bus.connect(endpoints.redis_url)
    try:
        # Made, then made again by a worker with another interval: updated, not duplicated or failed;
        # an operator's pause in between stays (a worker's restart does not undo it).
        await drift.ensure_schedule(temporal_client, settings, task_queue, schedule_id=schedule_id)
        await handle.pause(note="paused by the operator")
        changed = msgspec.structs.replace(settings, drift_interval_s=600.0)
        await drift.ensure_schedule(temporal_client, changed, task_queue, schedule_id=schedule_id)
        described = await handle.describe()
        assert described.schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(minutes=10))]
        assert described.schedule.state.paused
        assert described.schedule.state.note == "paused by the operator"
        await handle.unpause()

        async with build_worker(temporal_client, settings, db, redis, task_queue=task_queue):
            await handle.trigger()
            run_id = await _first_action(temporal_client, schedule_id)
            run = temporal_client.get_workflow_handle(run_id, result_type=DriftScheduleResult)
            result = await run.result()
    finally:
        await handle.delete()
        await redis.aclose()
    # The windows end at the time the schedule started the run, as its search attribute says.
    scheduled = (await run.describe()).typed_search_attributes.get(SCHEDULED_START)
    assert scheduled is not None
    assert result.window_end == scheduled.replace(microsecond=0)
    assert abs(result.window_end - now) < timedelta(minutes=5)
    assert result.alerts_created == 1
    alerts = (await alice.get("/v1/drift/alerts")).json()
    assert [(a["metric"], a["severity"]) for a in alerts] == [("cost", "high")]


async def _first_action(temporal_client: Client, schedule_id: str) -> str:
    """The workflow id of the schedule's first run, once the schedule has started it."""
    handle = temporal_client.get_schedule_handle(schedule_id)
    for _ in range(400):  # at most ~20 s
        actions = (await handle.describe()).info.recent_actions
        if actions:
            started = actions[0].action
            return str(started.workflow_id)  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)  # the schedule starts the run asynchronously; nothing to await
    raise AssertionError("the schedule never started its run")


async def test_a_starting_worker_makes_the_schedule_with_its_settings(
    temporal_client: Client, task_queue: str, endpoints: Endpoints, tmp_path: Path
) -> None:
    """`everloop worker` makes `drift-detection` at start: on its task queue, every DRIFT_INTERVAL."""
    handle = temporal_client.get_schedule_handle(drift.SCHEDULE_ID)
    env = worker_env(make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue), DRIFT_INTERVAL="15m")
    pool = Workers(env, tmp_path)
    process = pool.start()
    try:
        for _ in range(600):  # at most ~30 s for the process to start and make it
            try:
                described = await handle.describe()
            except RPCError:  # not there yet
                await asyncio.sleep(0.05)
                continue
            action = described.schedule.action
            assert isinstance(action, ScheduleActionStartWorkflow)
            if action.task_queue == task_queue:  # made by this worker, not an earlier test's
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the worker did not make the drift schedule")
        assert described.schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(minutes=15))]
        assert action.workflow == DriftLoop.WORKFLOW
    finally:
        pool.kill(process)  # nothing of it to keep: no need to wait for a graceful stop
        await handle.delete()


async def test_the_batch_activity_heartbeats_per_group(
    client: AsyncTestClient[Litestar], db: Database, settings: Settings
) -> None:
    """The tests run in a thread (review item 3); each group's start is a heartbeat, sent from the
    activity's loop, naming the account and the group: a batch of large accounts is never taken
    for a dead worker."""
    window_end = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    alice = As(client, await register(client))
    await drift_traffic.baseline_and_recent(alice, window_end, baseline_cost=0.01, recent_cost=0.02)
    activities = DriftActivities(db, settings)
    env = ActivityEnvironment()
    beats: list[tuple[object, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    owners = await env.run(activities.list_drift_owners, DriftOwnersInput(window_end=window_end))
    [owner] = owners.owner_ids
    result = await env.run(activities.detect_drift, DriftBatchInput(owner_ids=[owner], window_end=window_end))
    assert (result.groups_tested, result.alerts_created) == (2, 1)
    assert (owner, 1) in beats and (owner, 2) in beats
