"""Which limits a caller has, and an admin setting them (docs/rate_limits.md).

A caller's limits are, first found: its key's own (an API key's or a project key's), its user's
plan, RATE_LIMIT_PLAN. Each API key and each project key is its own bucket; a user signed in (token
or cookie) is one bucket for all their sessions. An API process keeps what it read for
RATE_LIMIT_CACHE_S (the request path then asks only Redis); a change made through this process is
seen at once, through another within that time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Literal

import redis.asyncio as redis
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database
from core.db.auth import ApiKey, User
from core.db.rate_limits import RateLimit
from core.db.traces import Project, ProjectKey
from core.errors import InvalidInput, NotFound
from core.identity import Identity
from core.rate_limit import ENTERPRISE, PLANS, Decision, Limiter, Limits
from core.schemas import rate_limits as schema
from core.schemas.rate_limits import SubjectType
from core.settings import Settings

# Bumped by every change an admin makes here, so this process's caches drop what they hold.
_changes = [0]
_CACHE_MAX = 50_000  # credentials remembered per process (then it starts over)


def default_limits(settings: Settings) -> Limits:
    plan = PLANS.get(settings.rate_limit_plan)
    if plan is not None:
        return plan
    assert settings.rate_limit_per_minute and settings.rate_limit_burst  # checked when settings load
    return Limits(plan=ENTERPRISE, per_minute=settings.rate_limit_per_minute, burst=settings.rate_limit_burst)


def bucket_of(who: Identity) -> str:
    """A key is its own bucket; a token or cookie is its user's."""
    if who.credential_id is not None and who.method in ("api_key", "project_key"):
        return f"{who.method}:{who.credential_id}"
    return f"user:{who.user_id}"


def _limits(row: RateLimit) -> Limits:
    plan = PLANS.get(row.plan)
    if plan is not None:
        return plan
    assert row.per_minute is not None and row.burst is not None  # the table's check
    return Limits(plan=row.plan, per_minute=row.per_minute, burst=row.burst)


class RateLimits:
    """What the middleware asks once per request: may this caller go on, and what to tell them."""

    def __init__(self, db: Database, client: redis.Redis, settings: Settings) -> None:
        self._db = db
        self._limiter = Limiter(client, timeout_s=settings.rate_limit_timeout_s)
        self._default = default_limits(settings)
        self._ttl = settings.rate_limit_cache_s
        self._cache: dict[str, tuple[float, int, Limits]] = {}
        # A credential's limits being read now: the requests that come meanwhile wait for that read
        # instead of each opening a database session of its own (a client's first volley of N
        # concurrent requests would otherwise take N more connections from the pool at once).
        self._reading: dict[str, asyncio.Future[Limits]] = {}

    async def take(self, who: Identity) -> Decision | None:
        """The decision for one request, or None when Redis cannot be asked (let it through)."""
        bucket = bucket_of(who)
        return await self._limiter.take(bucket, await self._limits_of(who, bucket))

    async def _limits_of(self, who: Identity, bucket: str) -> Limits:
        now = time.monotonic()
        held = self._cache.get(bucket)
        if held is not None and held[0] > now and held[1] == _changes[0]:
            return held[2]
        reading = self._reading.get(bucket)
        if reading is not None:
            try:
                return await asyncio.shield(reading)
            except asyncio.CancelledError:
                if not reading.cancelled():
                    raise  # this request was cancelled
                # The request that was reading them went away first: read them here.
        changes = _changes[0]
        future: asyncio.Future[Limits] = asyncio.get_running_loop().create_future()
        self._reading[bucket] = future
        try:
            limits = await self._read(who)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: whoever waits gets it raised, and no warning if nobody
            raise
        finally:
            if self._reading.get(bucket) is future:
                del self._reading[bucket]
        future.set_result(limits)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[bucket] = (now + self._ttl, changes, limits)
        return limits

    async def _read(self, who: Identity) -> Limits:
        async with self._db.session() as db:
            rows = await _rows_for(db, who.user_id, who.method, who.credential_id)
        found = _pick(rows, who.method, who.credential_id)
        return _limits(found) if found is not None else self._default


async def _rows_for(
    db: AsyncSession, user_id: uuid.UUID, method: str, key_id: uuid.UUID | None
) -> list[RateLimit]:
    conditions = [RateLimit.user_id == user_id]
    if key_id is not None and method == "api_key":
        conditions.append(RateLimit.api_key_id == key_id)
    elif key_id is not None and method == "project_key":
        conditions.append(RateLimit.project_key_id == key_id)
    return list(await db.scalars(select(RateLimit).where(or_(*conditions))))


def _pick(rows: list[RateLimit], method: str, key_id: uuid.UUID | None) -> RateLimit | None:
    """The key's own row first, then the user's."""
    for row in rows:
        if key_id is not None and key_id in (row.api_key_id, row.project_key_id):
            return row
    return next((row for row in rows if row.user_id is not None), None)


# -- what an admin does (api/rate_limits.py checks that it is one) --


def plans(settings: Settings) -> schema.Plans:
    return schema.Plans(
        data=[
            schema.Plan(
                name=name,
                per_minute=limits.per_minute if limits else None,
                burst=limits.burst if limits else None,
            )
            for name, limits in PLANS.items()
        ],
        default=settings.rate_limit_plan,
    )


_COLUMN = {
    SubjectType.USERS: RateLimit.user_id,
    SubjectType.API_KEYS: RateLimit.api_key_id,
    SubjectType.PROJECT_KEYS: RateLimit.project_key_id,
}
_NAME = {SubjectType.USERS: "user", SubjectType.API_KEYS: "API key", SubjectType.PROJECT_KEYS: "project key"}


async def _owner_of(db: AsyncSession, kind: SubjectType, subject_id: uuid.UUID) -> uuid.UUID:
    """The user a subject belongs to (a user is their own); 404 if there is no such subject."""
    owner: uuid.UUID | None = None
    if kind is SubjectType.USERS:
        owner = subject_id if await db.get(User, subject_id) is not None else None
    elif kind is SubjectType.API_KEYS:
        key = await db.get(ApiKey, subject_id)
        owner = key.user_id if key is not None else None
    else:
        owner = await db.scalar(
            select(Project.owner_id)
            .join(ProjectKey, ProjectKey.project_id == Project.id)
            .where(ProjectKey.id == subject_id)
        )
    if owner is None:
        raise NotFound(f"{_NAME[kind]} {subject_id} not found")
    return owner


async def _row(db: AsyncSession, kind: SubjectType, subject_id: uuid.UUID) -> RateLimit | None:
    row: RateLimit | None = await db.scalar(select(RateLimit).where(_COLUMN[kind] == subject_id))
    return row


def _method_of(kind: SubjectType) -> str:
    return {SubjectType.API_KEYS: "api_key", SubjectType.PROJECT_KEYS: "project_key"}.get(kind, "token")


async def effective(
    db: AsyncSession, settings: Settings, kind: SubjectType, subject_id: uuid.UUID
) -> schema.RateLimit:
    """The limits in force for a user or a key, as the middleware would find them."""
    owner = await _owner_of(db, kind, subject_id)
    key_id = None if kind is SubjectType.USERS else subject_id
    rows = await _rows_for(db, owner, _method_of(kind), key_id)
    found = _pick(rows, _method_of(kind), key_id)
    limits = _limits(found) if found is not None else default_limits(settings)
    source: Literal["key", "user", "default"] = (
        "default" if found is None else ("user" if found.user_id is not None else "key")
    )
    return schema.RateLimit(
        subject_type=kind,
        subject_id=subject_id,
        plan=limits.plan,
        per_minute=limits.per_minute,
        burst=limits.burst,
        source=source,
        updated_at=found.updated_at if found is not None else None,
    )


async def set_limit(
    db: AsyncSession,
    settings: Settings,
    kind: SubjectType,
    subject_id: uuid.UUID,
    data: schema.RateLimitSet,
) -> schema.RateLimit:
    figures = (data.per_minute, data.burst)
    if data.plan == ENTERPRISE and None in figures:
        field = "per_minute" if data.per_minute is None else "burst"
        raise InvalidInput("the enterprise plan takes its own per_minute and burst", field=field)
    if data.plan != ENTERPRISE and figures != (None, None):
        field = "per_minute" if data.per_minute is not None else "burst"
        raise InvalidInput(f"the {data.plan} plan has its own figures; set them with enterprise", field=field)
    await _owner_of(db, kind, subject_id)
    row = await _row(db, kind, subject_id)
    if row is None:
        row = RateLimit(**{_COLUMN[kind].key: subject_id}, plan=data.plan)
        db.add(row)
    row.plan, row.per_minute, row.burst = data.plan, data.per_minute, data.burst
    await db.commit()
    _changes[0] += 1
    return await effective(db, settings, kind, subject_id)


async def delete_limit(db: AsyncSession, kind: SubjectType, subject_id: uuid.UUID) -> None:
    row = await _row(db, kind, subject_id)
    if row is None:
        raise NotFound(f"no rate limit is set on {_NAME[kind]} {subject_id}")
    await db.delete(row)
    await db.commit()
    _changes[0] += 1


async def list_set(db: AsyncSession) -> schema.RateLimitList:
    rows = await db.scalars(select(RateLimit).order_by(RateLimit.updated_at.desc(), RateLimit.id.desc()))
    data = []
    for row in rows:
        kind, subject_id = _subject_of(row)
        limits = _limits(row)
        data.append(
            schema.RateLimit(
                subject_type=kind,
                subject_id=subject_id,
                plan=limits.plan,
                per_minute=limits.per_minute,
                burst=limits.burst,
                source="user" if kind is SubjectType.USERS else "key",
                updated_at=row.updated_at,
            )
        )
    return schema.RateLimitList(data=data)


def _subject_of(row: RateLimit) -> tuple[SubjectType, uuid.UUID]:
    if row.user_id is not None:
        return SubjectType.USERS, row.user_id
    if row.api_key_id is not None:
        return SubjectType.API_KEYS, row.api_key_id
    assert row.project_key_id is not None  # the table's check: exactly one subject
    return SubjectType.PROJECT_KEYS, row.project_key_id
