from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec


class EventContext(msgspec.Struct, kw_only=True):
    turn_id: str | None = None
    input_message_id: str | None = None
    exec_id: str | None = None


class Event(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    type: str
    ts: datetime
    session_id: uuid.UUID
    sequence: int
    context: EventContext
    data: dict[str, Any]
    metadata: dict[str, Any] | None
    tags: list[str]
