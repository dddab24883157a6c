"""Where a tool call that waits for approval stands, read from the session's events."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Event
from core.schemas import events as ev

REQUESTED = ev.type_of(ev.ToolApprovalRequested)
RESOLVED = ev.type_of(ev.ToolApprovalResolved)
ApprovalState = Literal["unknown", "waiting", "resolved", "ended"]


async def state(db: AsyncSession, session_id: uuid.UUID, tool_call_id: str) -> ApprovalState:
    """`unknown` (no call of the session asked for approval under this id), `resolved` (decided),
    `ended` (its turn ended undecided, e.g. cancelled) or `waiting`."""
    found = await db.execute(
        select(Event.type, Event.context).where(
            Event.session_id == session_id,
            Event.type.in_([REQUESTED, RESOLVED]),
            Event.data["tool_call_id"].astext == tool_call_id,
        )
    )
    rows = {kind: context for kind, context in found}
    if RESOLVED in rows:
        return "resolved"
    if REQUESTED not in rows:
        return "unknown"
    turn_id = (rows[REQUESTED] or {}).get("turn_id")
    ended = await db.execute(
        select(Event.id)
        .where(
            Event.session_id == session_id,
            Event.type.in_(ev.TURN_ENDS),
            Event.context["turn_id"].astext == str(turn_id),
        )
        .limit(1)
    )
    return "ended" if ended.first() is not None else "waiting"
