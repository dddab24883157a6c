"""The Temporal worker process: every workflow and activity, on the configured task queue."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import structlog
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.worker import Worker

from activities.diagnostics import DiagnosticActivities
from core import bus, temporal
from core.db import Database
from core.settings import Settings
from workflows.diagnostics import StackCheckWorkflow

log = structlog.get_logger("everloop.worker")

WORKFLOWS = [StackCheckWorkflow]


def build_worker(client: Client, task_queue: str, db: Database, redis: Redis) -> Worker:
    diagnostics = DiagnosticActivities(db, redis)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[diagnostics.check_backing_services],
        # Let in-flight activities finish (they heartbeat and are retried elsewhere if we die).
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def run_worker(settings: Settings, database_url: str, redis_url: str, temporal_address: str) -> None:
    client = await temporal.connect(temporal_address, settings.temporal_namespace)
    db = Database(database_url)
    redis = bus.connect(redis_url)
    worker = build_worker(client, settings.temporal_task_queue, db, redis)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker started", task_queue=settings.temporal_task_queue, temporal=temporal_address)
    async with worker:
        await stop.wait()
        log.info("worker stopping")
    await db.dispose()
    await redis.aclose()
