"""What the loop's activities share: the database, Redis, settings and the secret box."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from core.crypto import SecretBox
from core.db import Database
from core.db.models import Event
from core.schemas.events import EventData
from core.schemas.turns import SESSION_GONE
from core.settings import Settings
from services import events
from services.otlp_export import TurnExporter


@dataclass
class LoopDeps:
    db: Database
    bus: redis.Redis
    settings: Settings
    secrets: SecretBox | None
    # OTLP out (OTEL_EXPORTER_OTLP_ENDPOINT): each finished turn's spans, exported in the background.
    exporter: TurnExporter | None = None

    @property
    def simulator_url(self) -> str:
        return f"{self.settings.api_url}/simulator/v1"


@dataclass
class EventBatch:
    """A step's events: stored together (`store`, in the caller's transaction), published once it
    commits."""

    session_id: uuid.UUID
    context: dict[str, Any]
    pending: list[events.NewEvent] = field(default_factory=list)
    stored: list[Event] = field(default_factory=list)

    def add(self, data: EventData, key: str, *, ts: datetime | None = None) -> None:
        """Adds an event of the step: its payload (whose tag is its type) and its idempotency key,
        which names the step, never the attempt; `ts` if it happened before it is stored."""
        self.pending.append(events.NewEvent(data, key, ts))

    async def store(self, db: AsyncSession, values: dict[str, Any] | None = None) -> bool:
        """Stores the pending events (and sets `values` on the session row); False if the session
        is gone."""
        stored = await events.append_many(
            db, self.session_id, self.pending, context=self.context, values=values
        )
        if stored is None:
            return False
        self.stored += stored
        self.pending = []
        return True


def session_gone(what: str) -> ApplicationError:
    """A step's session (or the message it answers) was deleted: nothing left to do, no retry."""
    return ApplicationError(f"{what} is gone", type=SESSION_GONE, non_retryable=True)
