"""Whether a long request's credential still holds, asked by many SSE streams of one process.

Every authenticated stream asks at each keep-alive interval whether its API key or token was
revoked (`EventStream.allowed`): with thousands of streams that was a query each, hundreds a second,
though a chat backend typically opens them all with one API key. Streams of one credential now share
one answer: asks that arrive while it is being read wait for it, and an answer younger than
`FRESH_S` is given again. So a revocation ends a stream within its keep-alive interval plus
`FRESH_S`, however many streams share the credential.
"""

from __future__ import annotations

import asyncio
import hashlib

from core.db import Database
from services import auth

# How long an answer is given again without asking PostgreSQL.
FRESH_S = 1.0
# Answers kept at most (one per credential of an open stream); the oldest go first beyond it.
KEPT = 10_000


class CredentialChecks:
    """One per process (`api.state.Services`)."""

    def __init__(self, db: Database, secret: str | None) -> None:
        self._db = db
        self._secret = secret
        # Keyed by the credential's digest: the raw credential is not kept as a key.
        self._answers: dict[bytes, tuple[float, bool]] = {}
        self._reading: dict[bytes, asyncio.Task[bool]] = {}

    async def still_valid(self, credential: str) -> bool:
        """Whether `credential` would still authenticate; raises what the query raised (a stream
        asks again later when the database is away)."""
        if self._secret is None:
            return True
        key = hashlib.sha256(credential.encode()).digest()
        known = self._answers.get(key)
        if known is not None and asyncio.get_running_loop().time() - known[0] < FRESH_S:
            return known[1]
        reading = self._reading.get(key)
        if reading is None:
            # A task of its own: a stream that leaves does not cancel the answer others wait for.
            reading = asyncio.get_running_loop().create_task(self._read(key, credential, self._secret))
            reading.add_done_callback(_retrieved)
            self._reading[key] = reading
        return await asyncio.shield(reading)

    async def _read(self, key: bytes, credential: str, secret: str) -> bool:
        asked_at = asyncio.get_running_loop().time()
        try:
            async with self._db.session() as db:
                answer = await auth.still_valid(db, credential, secret)
        finally:
            del self._reading[key]
        self._answers.pop(key, None)
        self._answers[key] = (asked_at, answer)
        while len(self._answers) > KEPT:
            del self._answers[next(iter(self._answers))]
        return answer


def _retrieved(task: asyncio.Task[bool]) -> None:
    # A failed read whose askers have all left must not be logged as never retrieved.
    if not task.cancelled():
        task.exception()
