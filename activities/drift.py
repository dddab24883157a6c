"""The side of `DriftWorkflow` that reads the trace store and writes alerts (services/drift.py)."""

from __future__ import annotations

import asyncio
import uuid

from temporalio import activity

from core.db import Database
from core.schemas.drift import DriftBatchInput, DriftBatchResult, DriftOwners, DriftOwnersInput
from core.settings import Settings
from services import drift


class DriftActivities:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    @activity.defn(name="list_drift_owners")
    async def list_drift_owners(self, params: DriftOwnersInput) -> DriftOwners:
        async with self.db.session() as session:
            owners = await drift.owners_with_traffic(session, self.settings, params.window_end)
        return DriftOwners(owner_ids=[str(owner) for owner in owners])

    @activity.defn(name="detect_drift")
    async def detect_drift(self, params: DriftBatchInput) -> DriftBatchResult:
        tested = created = 0
        loop = asyncio.get_running_loop()
        for owner in params.owner_ids:

            def beat(group: int, owner: str = owner) -> None:
                # Called from the thread the tests run in: activity.heartbeat must run on the loop
                # (it schedules the send there); the thread's context is the activity's.
                loop.call_soon_threadsafe(activity.heartbeat, owner, group)

            # Each account in its own transaction: a retry re-tests the batch, finding what it wrote.
            async with self.db.session() as session:
                groups, made = await drift.detect_owner(
                    session, self.settings, uuid.UUID(owner), params.window_end, on_group=beat
                )
            tested += groups
            created += len(made)
            activity.heartbeat(owner)
        return DriftBatchResult(groups_tested=tested, alerts_created=created)
