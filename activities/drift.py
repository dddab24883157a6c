"""The side of `DriftWorkflow` that reads the trace store and writes alerts (services/drift.py)."""

from __future__ import annotations

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
        for owner in params.owner_ids:
            # Each account in its own transaction: a retry re-tests the batch, finding what it wrote.
            async with self.db.session() as session:
                groups, made = await drift.detect_owner(
                    session, self.settings, uuid.UUID(owner), params.window_end
                )
            tested += groups
            created += len(made)
            activity.heartbeat(owner)
        return DriftBatchResult(groups_tested=tested, alerts_created=created)
