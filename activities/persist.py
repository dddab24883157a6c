"""Runs a step's transaction until the database takes it: an outage is waited out inside the
activity, so it never spends the attempts that Temporal keeps for provider and tool failures, and
what the step already did (an LLM reply, a tool's result) is stored instead of being done again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating, in_activity
from core.db import Database
from core.db.availability import is_unavailable
from core.durability import STORE_BACKOFF_FIRST, STORE_BACKOFF_MAX, STORE_RETRY_WINDOW
from core.schemas.turns import DATABASE_UNAVAILABLE, LlmFailure

T = TypeVar("T")

log = structlog.get_logger("everloop.persist")


async def persist(
    db: Database,
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    what: str,
    details: tuple[Any, ...] = (),
) -> T:
    """`work(session)` in a fresh session, again after each failure that `is_unavailable` calls the
    database's (with doubling backoff up to STORE_BACKOFF_MAX), for up to STORE_RETRY_WINDOW.

    `work` must be one whole transaction that builds everything it stores inside itself (a failed
    attempt leaves nothing behind to reuse). Meanwhile the activity heartbeats every second with
    `details`, also while a statement hangs on a frozen server: Temporal must not take a slow
    database for a dead worker and run the step again (a second LLM call, a tool run twice), a
    cancel of the turn still arrives, and what the step keeps in its details is not overwritten.

    In a local activity (which cannot heartbeat) `work` runs once: the workflow's retry policy
    for that activity does the waiting."""
    if in_activity() and activity.info().is_local:
        async with db.session() as session:
            return await work(session)
    async with heartbeating(*details):
        return await _until_stored(db, work, what)


async def _until_stored(db: Database, work: Callable[[AsyncSession], Awaitable[T]], what: str) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STORE_RETRY_WINDOW.total_seconds()
    delay = STORE_BACKOFF_FIRST.total_seconds()
    failures = 0
    while True:
        try:
            async with db.session() as session:
                result = await work(session)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            if loop.time() + delay > deadline:
                # Not retryable: a new attempt would wait another whole window (and call the LLM or
                # run the tool again). The turn fails; if its end cannot be stored either, the
                # sweeper closes it once the database is back.
                raise ApplicationError(
                    f"the database was unavailable for {STORE_RETRY_WINDOW}; gave up storing {what}",
                    LlmFailure(
                        status=None,
                        kind=DATABASE_UNAVAILABLE,
                        message="the database was unavailable for too long",
                    ),
                    type=DATABASE_UNAVAILABLE,
                    non_retryable=True,
                ) from exc
            failures += 1
            # A line when it starts, then about one a minute, not one per attempt.
            if failures == 1 or (delay >= STORE_BACKOFF_MAX.total_seconds() and failures % 2 == 0):
                log.warning("database unavailable; will store when it is back", step=what, error=str(exc))
        else:
            if failures:
                log.info("database back; stored", step=what, attempts=failures + 1)
            return result
        await asyncio.sleep(delay)
        delay = min(delay * 2, STORE_BACKOFF_MAX.total_seconds())
