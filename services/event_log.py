"""Reading a session's stored events: positions, type filters, pages and sequence ranges."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

import msgspec
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Event, Session
from core.errors import InvalidInput
from core.identity import Identity
from core.ids import uuid7
from services import sessions
from services.common import page_of

_TYPE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class TypeFilter(msgspec.Struct, kw_only=True, frozen=True):
    """Which event types a reader wants: `include` (None: all of them) minus `exclude`."""

    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()

    def allows(self, type_: str) -> bool:
        return (self.include is None or type_ in self.include) and type_ not in self.exclude

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.include is not None:
            query = query.where(Event.type.in_(self.include))
        if self.exclude:
            query = query.where(Event.type.not_in(self.exclude))
        return query


def type_names(values: Iterable[str] | None, field: str) -> frozenset[str] | None:
    """Type names from repeated and/or comma-separated query values; None when none were given."""
    if values is None:
        return None
    names = {name.strip() for value in values for name in value.split(",")} - {""}
    for name in sorted(names):
        if not _TYPE_NAME.match(name):
            raise InvalidInput(f"{field}: {name[:100]!r} is not an event type name", field=field)
    return frozenset(names)


def type_filter(types: Iterable[str] | None, exclude: Iterable[str] | None) -> TypeFilter:
    return TypeFilter(
        include=type_names(types, "types"), exclude=type_names(exclude, "exclude") or frozenset()
    )


# A live frame's id (`output.message.delta`, `output.message.reset`): frames are not stored, yet
# Everruns' clients remember the last `id` they parsed and resume from it (its SDK sends it as
# `since_id` on every reconnect, a delta's included; its UI keeps it for the next EventSource), so a
# live id must name a position. Its stream gives it, per reader, at the moment it sends the frame:
# a UUIDv7 (time first, random after) whose version nibble says 8 and whose low 32 bits hold the
# sequence of the last stored event that reader had been sent (or skipped by its filter). Resuming
# from it starts right after that event, the one the client saw last: nothing it missed is
# skipped, nothing it has is sent again. A position the publisher chose could not be exact: readers
# get stored events and live frames in their own order (a backlog read, a late announcement).
# The 42 random bits keep ids unique per frame (clients drop a frame whose id they have seen).
# Stored events are UUIDv7s (version 7), so the two kinds never collide.
_LIVE_VERSION = 8
_LIVE_SEQUENCE_BITS = 32
_LIVE_SEQUENCE_MASK = (1 << _LIVE_SEQUENCE_BITS) - 1
_VERSION_MASK = 0xF << 76


def live_id(after: int) -> uuid.UUID:
    """The id of a live frame sent right after the stored event `after` (0: none yet)."""
    if not 0 <= after <= _LIVE_SEQUENCE_MASK:
        raise ValueError(f"sequence {after} does not fit a live id")
    value = uuid7().int & ~_VERSION_MASK & ~_LIVE_SEQUENCE_MASK
    return uuid.UUID(int=value | _LIVE_VERSION << 76 | after)


def live_position(event_id: uuid.UUID) -> int | None:
    """The sequence a live frame's id names; None if the id is not a live frame's."""
    if event_id.variant != uuid.RFC_4122 or event_id.version != _LIVE_VERSION:
        return None
    return event_id.int & _LIVE_SEQUENCE_MASK


async def position(db: AsyncSession, session_id: uuid.UUID, event_id: uuid.UUID, field: str) -> int:
    """Where a reader resumes from: the sequence of one of the session's stored events, or the one
    a live frame's id names (`live_id`)."""
    found = await db.execute(
        select(Event.sequence).where(Event.id == event_id, Event.session_id == session_id)
    )
    sequence = found.scalar_one_or_none()
    if sequence is not None:
        return int(sequence)
    after = live_position(event_id)
    if after is not None:
        last = await last_sequence(db, session_id)
        # A live id names a position this session has reached; one from further on was not sent here.
        if last is not None and after <= last:
            return after
    raise InvalidInput(f"{field}: no event {event_id} in session {session_id}", field=field)


async def stream_start(
    db: AsyncSession,
    who: Identity,
    agent_id: uuid.UUID | None,
    session_id: uuid.UUID,
    *,
    last_event_id: str | None,
    since_id: uuid.UUID | None,
    after_sequence: int | None,
) -> int:
    """The sequence a stream starts after (0: the whole session). The first cursor given wins:
    `Last-Event-ID` (what a reconnecting EventSource sends), `since_id` (the SDK's resume cursor,
    which it sends on every reconnect instead of its first `after_sequence`), `after_sequence`."""
    await sessions.get(db, who, agent_id, session_id)
    if last_event_id is not None and last_event_id.strip():
        try:
            resume = uuid.UUID(last_event_id.strip())
        except ValueError:
            raise InvalidInput("Last-Event-ID: not an event id", field="Last-Event-ID") from None
        return await position(db, session_id, resume, "Last-Event-ID")
    if since_id is not None:
        return await position(db, session_id, since_id, "since_id")
    if after_sequence is not None:
        last = await last_sequence(db, session_id) or 0
        if after_sequence > last:
            # Events up to it would never be sent: a cursor from another session, or made up.
            raise InvalidInput(
                f"after_sequence: the session's last event is {last}, not {after_sequence}",
                field="after_sequence",
            )
        return after_sequence
    return 0


class Window(msgspec.Struct, kw_only=True, frozen=True):
    """Which stored events a list answers: those with `after < sequence < before`, the first
    `limit` of them after `offset`, or with `before` set the last `limit` (still oldest first)."""

    since_id: uuid.UUID | None = None
    after_sequence: int | None = None
    before_sequence: int | None = None
    offset: int
    limit: int


async def list_(
    db: AsyncSession,
    who: Identity,
    agent_id: uuid.UUID | None,
    session_id: uuid.UUID,
    window: Window,
    types: TypeFilter,
) -> tuple[list[Event], int]:
    """A page of the session's events, oldest first, and how many the window holds in all."""
    await sessions.get(db, who, agent_id, session_id)
    if window.since_id is not None and window.after_sequence is not None:
        raise InvalidInput(
            "since_id and after_sequence both say where the list starts: give one", field="after_sequence"
        )
    after, before = window.after_sequence, window.before_sequence
    if after is not None and before is not None and after >= before:
        raise InvalidInput(
            f"after_sequence ({after}) must be below before_sequence ({before})", field="before_sequence"
        )
    if window.since_id is not None:
        after = await position(db, session_id, window.since_id, "since_id")
    query = types.apply(select(Event).where(Event.session_id == session_id))
    if after is not None:
        query = query.where(Event.sequence > after)
    if before is None:
        return await page_of(db, query.order_by(Event.sequence), window.offset, window.limit)
    # Backward: the newest `limit` before the cursor (after `offset` newer ones), answered oldest first.
    rows, total = await page_of(
        db, query.where(Event.sequence < before).order_by(Event.sequence.desc()), window.offset, window.limit
    )
    return rows[::-1], total


async def last_sequence(db: AsyncSession, session_id: uuid.UUID) -> int | None:
    """The session's highest committed event sequence; None once the session is gone. Sequences are
    handed out under the session row's lock, so every event up to this one is committed too."""
    found = await db.execute(select(Session.last_event_sequence).where(Session.id == session_id))
    value = found.scalar_one_or_none()
    return None if value is None else int(value)


async def last_sequences(db: AsyncSession, session_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """`last_sequence` of many sessions in one query; a session that is gone is not in the answer."""
    found = await db.execute(
        select(Session.id, Session.last_event_sequence).where(Session.id.in_(list(session_ids)))
    )
    return {session_id: int(last) for session_id, last in found.all()}


async def between(
    db: AsyncSession, session_id: uuid.UUID, after: int, upto: int, types: TypeFilter, limit: int
) -> list[Event]:
    """Up to `limit` events with `after < sequence <= upto` that pass the filter, in order."""
    query = select(Event).where(
        Event.session_id == session_id, Event.sequence > after, Event.sequence <= upto
    )
    rows = await db.execute(types.apply(query).order_by(Event.sequence).limit(limit))
    return list(rows.scalars().all())
