"""Storing session events with gap-free sequences, and announcing them on Redis after commit."""

from __future__ import annotations

import time
import uuid
import weakref
from typing import Any

import msgspec
import redis.asyncio as redis
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Event, Session
from core.schemas import events as schemas

log = structlog.get_logger("everloop.events")


def channel(session_id: uuid.UUID) -> str:
    return f"everloop:session:{session_id}:events"


async def next_sequence(db: AsyncSession, session_id: uuid.UUID, counter: str) -> int:
    """Takes the next number of a session counter. The row stays locked until the transaction ends,
    so concurrent writers to one session queue up and no number is skipped or reused."""
    column = getattr(Session, counter)
    result = await db.execute(
        update(Session).where(Session.id == session_id).values({column: column + 1}).returning(column)
    )
    return int(result.scalar_one())


async def lock_session(db: AsyncSession, session_id: uuid.UUID) -> bool:
    """Locks the session row until the transaction ends; False if the session is gone."""
    found = await db.execute(select(Session.id).where(Session.id == session_id).with_for_update())
    return found.first() is not None


async def append(
    db: AsyncSession,
    session_id: uuid.UUID,
    type_: str,
    data: dict[str, Any],
    *,
    context: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Event:
    """Adds an event in the caller's transaction. With an idempotency key, a second call returns
    the first event instead of storing another."""
    if idempotency_key is not None:
        # Lock before looking: two attempts of one step racing here see each other's event.
        await lock_session(db, session_id)
        existing = (
            await db.execute(
                select(Event).where(Event.session_id == session_id, Event.idempotency_key == idempotency_key)
            )
        ).scalar_one_or_none()
        if existing is not None:
            return existing
    event = Event(
        session_id=session_id,
        sequence=await next_sequence(db, session_id, "last_event_sequence"),
        type=type_,
        data=data,
        context=context or {},
        metadata_=metadata,
        idempotency_key=idempotency_key,
    )
    db.add(event)
    await db.flush()
    return event


def to_schema(event: Event) -> schemas.Event:
    return schemas.Event(
        id=event.id,
        type=event.type,
        ts=event.ts,
        session_id=event.session_id,
        sequence=event.sequence,
        context=msgspec.convert(event.context, schemas.EventContext),
        data=event.data,
        metadata=event.metadata_,
        tags=event.tags,
    )


# After a failed publish, skip Redis for a while: with Redis down, every delta of a streaming reply
# would otherwise wait out a connection timeout, and the turn with it.
_BACKOFF_S = 5.0
_down_until: weakref.WeakKeyDictionary[redis.Redis, float] = weakref.WeakKeyDictionary()


async def _send(bus: redis.Redis, session_id: uuid.UUID, payload: bytes) -> bool:
    if time.monotonic() < _down_until.get(bus, 0.0):
        return False
    try:
        await bus.publish(channel(session_id), payload)
    except Exception as exc:  # stored events stay in Postgres; readers poll it while Redis is away
        _down_until[bus] = time.monotonic() + _BACKOFF_S
        log.warning("Redis publish failed; skipping Redis for a while", error=str(exc), backoff_s=_BACKOFF_S)
        return False
    return True


async def publish(bus: redis.Redis, event: Event) -> None:
    """Fans a committed event out. Losing Redis loses no data: readers catch up from Postgres."""
    await _send(bus, event.session_id, msgspec.json.encode(to_schema(event)))


async def publish_ephemeral(
    bus: redis.Redis, session_id: uuid.UUID, type_: str, data: dict[str, Any]
) -> None:
    """A live-only frame (token deltas, resets): published, never stored, carries no sequence.
    A lost one is harmless: the stored message has the whole text."""
    frame = {"type": type_, "session_id": str(session_id), "data": data}
    await _send(bus, session_id, msgspec.json.encode(frame))


async def publish_all(bus: redis.Redis, stored: list[Event]) -> None:
    for event in stored:
        await publish(bus, event)
