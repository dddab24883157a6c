"""What the loop's activities share: the database, Redis, settings and the secret box."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto import SecretBox
from core.db import Database
from core.db.models import Event
from core.services import events
from core.settings import Settings


@dataclass
class LoopDeps:
    db: Database
    bus: redis.Redis
    settings: Settings
    secrets: SecretBox | None

    @property
    def simulator_url(self) -> str:
        return f"{self.settings.api_url}/simulator/v1"


@dataclass
class EventBatch:
    """Events stored in one transaction, published once it commits."""

    session_id: uuid.UUID
    context: dict[str, Any]
    stored: list[Event] = field(default_factory=list)

    async def add(self, db: AsyncSession, type_: str, data: dict[str, Any], key: str) -> Event:
        event = await events.append(
            db, self.session_id, type_, data, context=self.context, idempotency_key=key
        )
        self.stored.append(event)
        return event
