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


async def position(db: AsyncSession, session_id: uuid.UUID, event_id: uuid.UUID, field: str) -> int:
    """The sequence of one of the session's events: where a reader resumes from."""
    found = await db.execute(
        select(Event.sequence).where(Event.id == event_id, Event.session_id == session_id)
    )
    sequence = found.scalar_one_or_none()
    if sequence is None:
        raise InvalidInput(f"{field}: no event {event_id} in session {session_id}", field=field)
    return int(sequence)


async def list_(
    db: AsyncSession,
    who: Identity,
    agent_id: uuid.UUID,
    session_id: uuid.UUID,
    since_id: uuid.UUID | None,
    types: TypeFilter,
    offset: int,
    limit: int,
) -> tuple[list[Event], int]:
    await sessions.get(db, who, agent_id, session_id)
    after = 0 if since_id is None else await position(db, session_id, since_id, "since_id")
    query = select(Event).where(Event.session_id == session_id, Event.sequence > after)
    return await page_of(db, types.apply(query).order_by(Event.sequence), offset, limit)


async def last_sequence(db: AsyncSession, session_id: uuid.UUID) -> int | None:
    """The session's highest committed event sequence; None once the session is gone. Sequences are
    handed out under the session row's lock, so every event up to this one is committed too."""
    found = await db.execute(select(Session.last_event_sequence).where(Session.id == session_id))
    value = found.scalar_one_or_none()
    return None if value is None else int(value)


async def between(
    db: AsyncSession, session_id: uuid.UUID, after: int, upto: int, types: TypeFilter, limit: int
) -> list[Event]:
    """Up to `limit` events with `after < sequence <= upto` that pass the filter, in order."""
    query = select(Event).where(
        Event.session_id == session_id, Event.sequence > after, Event.sequence <= upto
    )
    rows = await db.execute(types.apply(query).order_by(Event.sequence).limit(limit))
    return list(rows.scalars().all())
