"""The Temporal worker process: every workflow and activity, on the configured task queue."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import structlog
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.worker import Worker

from activities import heartbeat
from activities.deps import LoopDeps
from activities.diagnostics import DiagnosticActivities
from activities.drift import DriftActivities
from activities.golden import GoldenActivities
from activities.llm import ReasonActivities
from activities.metrics import MetricsInterceptor, WorkerMetrics
from activities.replay import ReplayActivities
from activities.tools import ToolActivities
from activities.turns import TurnActivities
from activities.webhooks import WebhookActivities
from core import bus, metrics, temporal
from core.crypto import secret_box
from core.db import Database
from core.settings import DEFAULT_WORKER_ACTIVITIES, DEFAULT_WORKER_WORKFLOW_TASKS, Settings
from everloop.heap import freeze_startup_heap
from everloop.liveness import touch_forever
from everloop.sweeper import sweep_forever
from services import drift, litellm_setup
from services.otlp_export import TurnExporter
from workflows.diagnostics import StackCheckWorkflow
from workflows.drift import DriftWorkflow
from workflows.golden import GoldenRunWorkflow
from workflows.replay import ReplayWorkflow
from workflows.session import SessionWorkflow
from workflows.webhook_delivery import WebhookDeliveryWorkflow

log = structlog.get_logger("everloop.worker")

WORKFLOWS = [
    StackCheckWorkflow,
    SessionWorkflow,
    DriftWorkflow,
    ReplayWorkflow,
    GoldenRunWorkflow,
    WebhookDeliveryWorkflow,
]


# How much work one worker process takes at once; tests/bench/throughput.py measures them and
# docs/benchmarks.md has the figures. Workflow tasks are CPU work in Temporal's sandbox, in threads
# that share the event loop's GIL: more at once adds no throughput, only latency, and a task not
# done within the 10 s workflow-task timeout is done again. With temporalio's default of 100, 200
# sessions of back-to-back turns on 2 busy cores made 741 workflow tasks time out and 1,459 take
# over 5 s in one run, for 0.8 turns/s; with 10, none timed out (19 over 5 s) and the same load ran
# 1.5 turns/s with zero errors (2026-11-30, load average 9-16). Waiting tasks stay in Temporal's
# queue, which has no timeout, and go to whichever worker process has a slot.
# The default of WORKER_MAX_CONCURRENT_WORKFLOW_TASKS:
MAX_CONCURRENT_WORKFLOW_TASKS = DEFAULT_WORKER_WORKFLOW_TASKS
# Steps (LLM calls, tools, their transactions) at once, all on this process's one event loop. With
# temporalio's default of 100 the loop could not send their heartbeats within the 10 s heartbeat
# timeout under 200 sessions: 156 to 2,465 steps per run cancelled and run again, 40 QueuePool
# timeouts (100 steps, 10 + 10 pooled connections), and 22-28 turns failed (llm_error) after their
# attempts ran out; with 20 (and 10 workflow tasks), one retried step (a simulator reset) and zero
# errors. 20 is also what the loop can stream at once: litellm costs ~1 ms of CPU per streamed
# chunk (docs/benchmarks.md), so ~20 replies at 50 chunks/s fill a core; and it is the pool's
# size plus overflow, so no step waits for a connection. More load wants more worker processes.
# With real providers a step mostly waits on the network: raise WORKER_MAX_CONCURRENT_ACTIVITIES
# (and DB_POOL_SIZE with it) while the process's CPU allows; the default of that setting:
MAX_CONCURRENT_ACTIVITIES = DEFAULT_WORKER_ACTIVITIES
SLOTS = {  # the defaults, as temporalio's Worker options
    "max_concurrent_workflow_tasks": MAX_CONCURRENT_WORKFLOW_TASKS,
    "max_concurrent_activities": MAX_CONCURRENT_ACTIVITIES,
}


def build_worker(
    client: Client,
    settings: Settings,
    db: Database,
    redis: Redis,
    *,
    task_queue: str | None = None,
    exporter: TurnExporter | None = None,
    worker_metrics: WorkerMetrics | None = None,
) -> Worker:
    """`exporter`: where finished turns' spans go (default: OTEL_EXPORTER_OTLP_ENDPOINT's, if set);
    `worker_metrics`: where every activity is timed (none: not timed)."""
    exporter = exporter or TurnExporter.from_settings(settings)
    deps = LoopDeps(db=db, bus=redis, settings=settings, secrets=secret_box(settings), exporter=exporter)
    turns, reason, tools = TurnActivities(deps), ReasonActivities(deps), ToolActivities(deps)
    drift_activities = DriftActivities(db, settings)
    replay = ReplayActivities(deps)
    golden = GoldenActivities(deps)
    webhook = WebhookActivities(db, settings, deps.secrets)
    return Worker(
        client,
        task_queue=task_queue or settings.temporal_task_queue,
        workflows=WORKFLOWS,
        workflow_runner=temporal.workflow_runner(),
        interceptors=[MetricsInterceptor(worker_metrics)] if worker_metrics is not None else [],
        activities=[
            DiagnosticActivities(db, redis).check_backing_services,
            turns.finish_turn,
            reason.reason,
            tools.run_tool,
            drift_activities.list_drift_owners,
            drift_activities.detect_drift,
            replay.plan,
            replay.run_span,
            replay.finish,
            golden.plan,
            golden.fork,
            golden.judge,
            golden.finish,
            webhook.attempt,
        ],
        # Heartbeats reach the server at least every second, so a cancel reaches a running LLM
        # call or tool within about a second (the default waits up to 80% of the timeout).
        max_heartbeat_throttle_interval=timedelta(seconds=heartbeat.EVERY_S),
        default_heartbeat_throttle_interval=timedelta(seconds=heartbeat.EVERY_S),
        # Let in-flight activities finish (they heartbeat and are retried elsewhere if we die).
        graceful_shutdown_timeout=timedelta(seconds=10),
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        # Not counted in the above: without a cap, temporalio runs up to 100 at once, each holding
        # a pooled connection.
        max_concurrent_local_activities=settings.worker_max_concurrent_local_activities,
    )


def serve_metrics(
    settings: Settings, db: Database, redis: Redis
) -> tuple[WorkerMetrics | None, metrics.MetricsServer | None]:
    """With WORKER_METRICS_PORT: the worker's metrics, and their server on WORKER_METRICS_HOST.
    Without, or when they cannot or may not be served (logged, and the worker runs on): neither, so
    no activity is timed for nobody to read. Off by default: tests and `everloop dev` start several
    workers on one machine, where a fixed port would be the first's."""
    if not settings.worker_metrics_port:
        return None, None
    timed = WorkerMetrics(db, redis)
    server = metrics.serve(
        timed.registry, settings.worker_metrics_host, settings.worker_metrics_port, settings.metrics_token
    )
    return (timed, server) if server is not None else (None, None)


async def run_worker(settings: Settings, database_url: str, redis_url: str, temporal_address: str) -> None:
    client = await temporal.connect(temporal_address, settings.temporal_namespace)
    db = Database(
        database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        timeouts=settings.database_timeouts,
    )
    redis = bus.connect(redis_url)
    exporter = TurnExporter.from_settings(settings)
    worker_metrics, metrics_server = serve_metrics(settings, db, redis)
    worker = build_worker(client, settings, db, redis, exporter=exporter, worker_metrics=worker_metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Drift detection runs on a Temporal schedule; each worker makes sure it exists as configured.
    # The turns matter more: a worker that cannot make it (a server without schedules, a namespace
    # it may not write to, a timeout, a lost update race) still
    # starts, and says why: whatever the error, the schedule is not worth a dead worker.
    try:
        await drift.ensure_schedule(client, settings, settings.temporal_task_queue)
    except Exception as exc:
        log.error("drift schedule not made", error=str(exc) or type(exc).__name__, exc_info=True)
    await litellm_setup.warm_up()  # litellm's slow first call, here rather than in a user's turn
    # Started: the imports' objects (litellm's, the SDK's, the validated workflows') out of every full
    # collection's walk, which would otherwise stall each turn of the process for hundreds of ms.
    frozen = freeze_startup_heap()
    log.info(
        "worker started", task_queue=settings.temporal_task_queue, temporal=temporal_address, frozen=frozen
    )
    async with worker:
        sweeper = asyncio.create_task(
            sweep_forever(
                db,
                client,
                settings.temporal_task_queue,
                redis,
                exporter=exporter,
                webhook_schedule=settings.webhook_retry_schedule_s,
            )
        )
        alive = asyncio.create_task(touch_forever(settings.worker_liveness_file, worker))
        await stop.wait()
        log.info("worker stopping")
        alive.cancel()
        sweeper.cancel()
    if metrics_server is not None:
        await asyncio.to_thread(metrics_server.close)  # waits for its thread: not on the loop
    if exporter is not None:
        await exporter.shutdown()  # gives the turns handed over a moment; the rest is the sweep's
    await db.dispose()
    await redis.aclose()
