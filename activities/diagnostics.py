"""The side of `StackCheckWorkflow` that touches the services, from inside the worker."""

from __future__ import annotations

import redis.asyncio as redis
from sqlalchemy import text
from temporalio import activity

from core.db import Database
from core.schemas.diagnostics import StackCheckInput, StackCheckResult


class DiagnosticActivities:
    def __init__(self, db: Database, bus: redis.Redis) -> None:
        self.db = db
        self.bus = bus

    @activity.defn(name="check_backing_services")
    async def check_backing_services(self, params: StackCheckInput) -> StackCheckResult:
        async with self.db.session() as session:
            pg_version = (await session.execute(text("SHOW server_version"))).scalar_one()
        info = await self.bus.info("server")
        return StackCheckResult(
            token=params.token,
            postgres_version=str(pg_version),
            redis_version=str(info.get("redis_version", "")),
            task_queue=activity.info().task_queue,
        )
