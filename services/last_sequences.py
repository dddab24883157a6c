"""Many streams' "what is this session's last event sequence?" answered by one query.

Every open stream asks it when its keep-alive is due (a lost announcement is caught that way) and
when it starts following: with thousands of streams on one API process that was a query each, a
few hundred a second at 5,000 streams, and the pool's connections went to them instead of to the
streams being opened. Asks that arrive while a query runs wait for the next one, which then
answers all of them: no timer, so a lone ask waits for no one, and each answer is read after it was
asked (a stream that has just subscribed still reads PostgreSQL after its subscription).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import anyio

from core.db import Database
from services import event_log

# Sessions per query: a bounded `IN` list.
BATCH = 500
QUERY_TIMEOUT_S = 30.0


class LastSequences:
    """One per process (`api.state.Services`)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: dict[uuid.UUID, list[asyncio.Future[int | None]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def get(self, session_id: uuid.UUID) -> int | None:
        """The session's last committed sequence, read after this call; None if the session is gone.
        Raises what the query raised (the stream tells a database outage from the rest)."""
        answer: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(session_id, []).append(answer)
        if self._reader is None:
            self._reader = self._spawn(self._read())
        # Shielded: a stream that leaves does not cancel the query the others wait on.
        return await asyncio.shield(answer)

    async def _read(self) -> None:
        asked: dict[uuid.UUID, list[asyncio.Future[int | None]]] = {}
        try:
            while self._waiting:
                asked, self._waiting = self._waiting, {}
                ids = list(asked)
                for start in range(0, len(ids), BATCH):
                    chunk = ids[start : start + BATCH]
                    try:
                        found = await self._query(chunk)
                    except Exception as exc:  # every stream that asked gets it, and decides
                        for session_id in chunk:
                            _settle(asked[session_id], error=exc)
                        continue
                    for session_id in chunk:
                        _settle(asked[session_id], value=found.get(session_id))
        except BaseException as exc:
            # Cancelled (the process is stopping) or a bug: no stream may wait for an answer that
            # will never come. Each gets an error, as for a failed query, and decides.
            error = exc if isinstance(exc, Exception) else RuntimeError("the read was cancelled")
            for answers in [*asked.values(), *self._waiting.values()]:
                _settle(answers, error=error)
            self._waiting = {}
            raise
        finally:
            self._reader = None

    async def _query(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        with anyio.fail_after(QUERY_TIMEOUT_S):
            async with self._db.session() as db:
                return await event_log.last_sequences(db, ids)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(work)


def _settle(
    answers: list[asyncio.Future[int | None]], *, value: int | None = None, error: Exception | None = None
) -> None:
    for answer in answers:
        if answer.done():
            continue
        if error is None:
            answer.set_result(value)
        else:
            answer.set_exception(error)
            answer.exception()  # retrieved: one that nobody awaits any more must not be logged
