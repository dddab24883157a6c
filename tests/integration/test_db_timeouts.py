"""The DB_* settings reach every connection: PostgreSQL enforces its part, and the client's own
limits turn a statement that is never answered into an error the API maps to a 503."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.db import Database
from core.db.availability import is_unavailable
from core.settings import DatabaseTimeouts
from everloop.stack import Endpoints


async def test_postgres_enforces_the_statement_and_idle_limits(endpoints: Endpoints) -> None:
    db = Database(endpoints.database_url, pool_size=1, timeouts=DatabaseTimeouts(statement_s=0.5))
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SHOW statement_timeout"))).scalar_one() == "500ms"
            idle = await conn.execute(text("SHOW idle_in_transaction_session_timeout"))
            assert idle.scalar_one() == "1min"
        with pytest.raises(DBAPIError) as raised:
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(5)"))
        # Cancelled by the server (57014): the database did not answer in time, a 503 for the API.
        assert is_unavailable(raised.value)
        async with db.engine.connect() as conn:  # the connection (or a new one) works
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()


async def test_a_pooled_connection_is_pinged_and_reused(db: Database) -> None:
    """The checkout ping keeps a live connection: five transactions in a row run on one backend.
    (A ping asyncpg refused once discarded every connection, so each transaction connected anew.)"""
    backends = []
    for _ in range(5):
        async with db.session() as session:
            backends.append(await session.scalar(text("SELECT pg_backend_pid()")))
    assert len(set(backends)) == 1, backends
