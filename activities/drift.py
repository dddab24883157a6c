"""The side of `DriftWorkflow` that reads the trace store and writes alerts (services/drift.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from temporalio import activity

from activities.persist import persist
from core.db import Database
from core.schemas.drift import (
    DriftBatchInput,
    DriftBatchResult,
    DriftLoop,
    DriftOwners,
    DriftOwnersInput,
)
from core.settings import Settings
from services import drift


class DriftActivities:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    @activity.defn(name=DriftLoop.LIST_OWNERS)
    async def list_drift_owners(self, params: DriftOwnersInput) -> DriftOwners:
        # A database outage is waited out here (as every store step does), not spent on retries.
        owners = await persist(
            self.db,
            lambda session: drift.owners_with_traffic(
                session,
                self.settings,
                params.window_end,
                after=uuid.UUID(params.after) if params.after else None,
                limit=params.limit,
            ),
            what="drift:owners",
        )
        return DriftOwners(owner_ids=[str(owner) for owner in owners])

    @activity.defn(name=DriftLoop.DETECT)
    async def detect_drift(self, params: DriftBatchInput) -> DriftBatchResult:
        tested = created = 0
        for owner in params.owner_ids:
            groups, made = await self._detect(owner, params.window_end)
            tested += groups
            created += len(made)
            activity.heartbeat(owner)
        return DriftBatchResult(groups_tested=tested, alerts_created=created)

    async def _detect(self, owner: str, window_end: datetime) -> tuple[int, list[uuid.UUID]]:
        loop = asyncio.get_running_loop()

        def beat(group: int) -> None:
            # Called from the thread the tests run in: activity.heartbeat must run on the loop (it
            # schedules the send there); the thread's context is the activity's.
            loop.call_soon_threadsafe(activity.heartbeat, owner, group)

        # The account in its own transaction (a retry re-tests the batch, finding what it wrote),
        # which waits out a database outage rather than failing the batch.
        return await persist(
            self.db,
            lambda session: drift.detect_owner(
                session, self.settings, uuid.UUID(owner), window_end, on_group=beat
            ),
            what=f"drift:{owner}",
            details=(owner,),
        )
