"""SSE streams of one credential share the answer to "does it still hold?"
(`services.credential_checks`), against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.exc import DBAPIError

from core.db import Database
from core.db.availability import is_unavailable
from everloop.stack.process import free_port
from services import auth, credential_checks
from services.credential_checks import CredentialChecks
from tests.statements import statements_with

SECRET = "s" * 32


async def _key(db: Database) -> tuple[uuid.UUID, uuid.UUID, str]:
    async with db.session() as s:
        user = await auth.register(s, f"{uuid.uuid4().hex}@example.com", "a long password 1")
        row, key = await auth.create_api_key(s, user.id, "streams", None)
        return user.id, row.id, key


async def test_many_streams_of_one_key_share_one_read_and_a_fresh_answer(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credential_checks, "FRESH_S", 60.0)
    user_id, key_id, key = await _key(db)
    _, _, other = await _key(db)
    checks = CredentialChecks(db, SECRET)
    reads = statements_with(db, "FROM api_keys")
    answers = await asyncio.gather(*(checks.still_valid(key) for _ in range(100)))
    assert answers == [True] * 100
    assert len(reads) == 1, "asks that meet share one read"
    assert await checks.still_valid(key) is True
    assert len(reads) == 1, "a fresh answer is given again"
    assert await checks.still_valid(other) is True
    assert len(reads) == 2, "another credential is its own read"

    async with db.session() as s:
        await auth.delete_api_key(s, user_id, key_id)
    monkeypatch.setattr(credential_checks, "FRESH_S", 0.0)
    assert await checks.still_valid(key) is False, "past FRESH_S the revocation is read"


async def test_a_stream_that_leaves_does_not_cancel_the_read_the_others_wait_for(db: Database) -> None:
    _, _, key = await _key(db)
    checks = CredentialChecks(db, SECRET)
    first = asyncio.create_task(checks.still_valid(key))
    others = [asyncio.create_task(checks.still_valid(key)) for _ in range(5)]
    await asyncio.sleep(0)  # every ask has joined the one read
    first.cancel()
    assert await asyncio.gather(*others) == [True] * 5
    assert first.cancelled()


async def test_an_unavailable_database_reaches_every_asker_and_is_not_kept() -> None:
    nowhere = Database(f"postgresql://everloop@127.0.0.1:{free_port()}/everloop", pool_size=1)
    try:
        checks = CredentialChecks(nowhere, SECRET)
        results = await asyncio.gather(
            *(checks.still_valid("evr_" + "0" * 64) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, DBAPIError | OSError) and is_unavailable(r) for r in results), results
        with pytest.raises((DBAPIError, OSError)):
            await checks.still_valid("evr_" + "0" * 64)  # asked again, not an answer kept
    finally:
        await nowhere.dispose()
