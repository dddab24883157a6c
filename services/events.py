"""Storing session events with gap-free sequences, and announcing them on Redis after commit."""

from __future__ import annotations

import time
import uuid
import weakref
from datetime import datetime
from typing import Any, cast

import msgspec
import redis.asyncio as redis
import structlog
from sqlalchemy import Integer, Table, bindparam, insert, select, update
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.base import utcnow
from core.db.models import Event, Session
from core.ids import uuid7
from core.schemas import events as schemas
from services import turn_traces

log = structlog.get_logger("everloop.events")


def channel(session_id: uuid.UUID) -> str:
    return f"everloop:session:{session_id}:events"


async def next_sequence(db: AsyncSession, session_id: uuid.UUID, counter: str) -> int:
    """Takes the next number of a session counter. The row stays locked until the transaction ends,
    so concurrent writers to one session queue up and no number is skipped or reused."""
    taken = await take_sequence(db, session_id, counter)
    if taken is None:
        raise NoResultFound(f"session {session_id} is gone")
    return taken


async def take_sequence(db: AsyncSession, session_id: uuid.UUID, counter: str) -> int | None:
    """`next_sequence`, or None if the session is gone."""
    column = getattr(Session, counter)
    result = await db.execute(
        update(Session).where(Session.id == session_id).values({column: column + 1}).returning(column)
    )
    taken = result.scalar_one_or_none()
    return None if taken is None else int(taken)


async def lock_session(db: AsyncSession, session_id: uuid.UUID) -> bool:
    """Locks the session row until the transaction ends; False if the session is gone."""
    found = await db.execute(select(Session.id).where(Session.id == session_id).with_for_update())
    return found.first() is not None


async def append(
    db: AsyncSession,
    session_id: uuid.UUID,
    data: schemas.EventData,
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
        type=schemas.type_of(data),
        data=schemas.to_data(data),
        context=context or {},
        metadata_=metadata,
        idempotency_key=idempotency_key,
    )
    db.add(event)
    await db.flush()
    return event


class NewEvent(msgspec.Struct, frozen=True):
    """An event to store with `append_many`; its idempotency key names the step, never the attempt."""

    data: schemas.EventData
    idempotency_key: str
    # When it happened, if that was before it is stored (a short tool call's start, stored with its
    # result): its `ts`, so the tool's span keeps the call's duration. None: when it is stored.
    ts: datetime | None = None


async def append_many(
    db: AsyncSession,
    session_id: uuid.UUID,
    new: list[NewEvent],
    *,
    context: dict[str, Any],
    values: dict[str, Any] | None = None,
) -> list[Event] | None:
    """Adds a step's events in the caller's transaction with three statements however many there
    are: one UPDATE that locks the session row and takes a run of sequence numbers (and sets
    `values` on the session), one SELECT of the keys already stored, one INSERT. An event whose key
    is stored already comes back as stored, not again. None if the session is gone.

    Every step of every turn comes through here, so the statements are built once (below) and run as
    Core statements: SQLAlchemy then neither rebuilds their cache keys nor runs the ORM's flush for
    rows this function writes and returns itself."""
    if values:
        column = Session.last_event_sequence
        taken = await db.execute(
            update(Session)
            .where(Session.id == session_id)
            .values({column: column + len(new), **values})
            .returning(column)
        )
    else:
        taken = await db.execute(_TAKE_EVENT_NUMBERS, {"session_id": session_id, "count": len(new)})
    last = taken.scalar_one_or_none()
    if last is None:
        return None
    if not new:
        return []
    # Looked up under the row lock: an earlier attempt of the step has committed or never will.
    keys = [e.idempotency_key for e in new]
    found = set((await db.execute(_STORED_KEYS, {"session_id": session_id, "keys": keys})).scalars())
    stored: dict[str | None, Event] = {}
    sequence = last - len(new)
    if found:
        # A retried step (rare): its stored events as they are, and the numbers they do not need
        # given back (the row is still locked by this transaction, so nobody took a number after).
        rows = await db.execute(
            select(Event).where(Event.session_id == session_id, Event.idempotency_key.in_(found))
        )
        stored = {e.idempotency_key: e for e in rows.scalars()}
        fresh = sum(1 for e in new if e.idempotency_key not in stored)
        await db.execute(
            update(Session)
            .where(Session.id == session_id)
            .values({Session.last_event_sequence: sequence + fresh})
        )
    out: list[Event] = []
    rows_to_insert: list[dict[str, Any]] = []
    now = utcnow()
    for item in new:
        if (event := stored.get(item.idempotency_key)) is None:
            sequence += 1
            row = {
                "id": uuid7(),
                "session_id": session_id,
                "sequence": sequence,
                "type": schemas.type_of(item.data),
                "ts": item.ts or now,
                "data": schemas.to_data(item.data),
                "context": context,
                "tags": [],
                "idempotency_key": item.idempotency_key,
            }
            # (`metadata` left out: SQL NULL, as the ORM stored it; a JSONB None would be JSON null.)
            rows_to_insert.append(row)
            # The row as stored, for the caller (publishing, the spans): not in the session's
            # identity map, which nothing in the step reads it back from.
            event = Event(**row, metadata_=None)
        out.append(event)
    if rows_to_insert:
        await db.execute(_INSERT_EVENTS, rows_to_insert)
    # The turn's spans, in this transaction: every path that stores a step's events writes them
    # (a retried step's stored events map onto the same spans, written once).
    await turn_traces.project(db, session_id, out)
    return out


# append_many's statements, built once (their cache keys are computed once and kept on them).
_TAKE_EVENT_NUMBERS = (
    update(Session)
    .where(Session.id == bindparam("session_id"))
    .values({Session.last_event_sequence: Session.last_event_sequence + bindparam("count", type_=Integer)})
    .returning(Session.last_event_sequence)
)
_STORED_KEYS = select(Event.idempotency_key).where(
    Event.session_id == bindparam("session_id"),
    Event.idempotency_key.in_(bindparam("keys", expanding=True)),
)
_INSERT_EVENTS = insert(cast(Table, Event.__table__))


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


async def _send(bus: redis.Redis, session_id: uuid.UUID, *payloads: bytes) -> bool:
    """Publishes in order, several payloads in one round trip."""
    if time.monotonic() < _down_until.get(bus, 0.0):
        return False
    try:
        if len(payloads) == 1:
            await bus.publish(channel(session_id), payloads[0])
        else:
            async with bus.pipeline(transaction=False) as pipe:
                for payload in payloads:
                    pipe.publish(channel(session_id), payload)
                await pipe.execute()
    except Exception as exc:  # stored events stay in Postgres; readers poll it while Redis is away
        _down_until[bus] = time.monotonic() + _BACKOFF_S
        log.warning("Redis publish failed; skipping Redis for a while", error=str(exc), backoff_s=_BACKOFF_S)
        return False
    return True


async def publish(bus: redis.Redis, event: Event) -> None:
    """Fans a committed event out. Losing Redis loses no data: readers catch up from Postgres."""
    await _send(bus, event.session_id, msgspec.json.encode(to_schema(event)))


class LiveFrame(msgspec.Struct, kw_only=True):
    """A live-only frame as it travels on the session's channel: the envelope of
    `schemas.LiveEvent` without its `id`, which each reader's stream gives it
    (`services.event_stream`). `ts` and `context` may be missing from a frame an older worker sent."""

    type: str
    session_id: uuid.UUID
    ts: datetime | None = None
    sequence: None = None
    context: schemas.EventContext = msgspec.field(default_factory=schemas.EventContext)
    data: dict[str, Any]


async def publish_ephemeral(
    bus: redis.Redis,
    session_id: uuid.UUID,
    data: schemas.EphemeralData,
    context: schemas.EventContext | None = None,
) -> None:
    """A live-only frame (token deltas, resets): published, never stored, carries no sequence.
    A lost one is harmless: the stored message has the whole text."""
    frame = LiveFrame(
        type=schemas.type_of(data),
        session_id=session_id,
        ts=utcnow(),
        context=context or schemas.EventContext(),
        data=schemas.to_data(data),
    )
    await _send(bus, session_id, msgspec.json.encode(frame))


async def publish_all(bus: redis.Redis, stored: list[Event]) -> None:
    """Publishes one session's committed events in order, in one round trip."""
    if stored:
        await _send(bus, stored[0].session_id, *(msgspec.json.encode(to_schema(e)) for e in stored))
