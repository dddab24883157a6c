"""The DB_* settings reach every connection: PostgreSQL enforces its part, and the client's own
limits turn a statement that is never answered into an error the API maps to a 503."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.db import Database, engine
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


@pytest.mark.parametrize("idle_s", [0.0, 60.0], ids=["pinged", "recent"])
async def test_a_pooled_connection_is_reused(
    db: Database, monkeypatch: pytest.MonkeyPatch, idle_s: float
) -> None:
    """Five transactions in a row run on one backend, whether the checkout pings the connection or
    trusts it as recently used. (A ping asyncpg refused once discarded every connection, so each
    transaction connected anew.)"""
    monkeypatch.setattr(engine, "PING_IDLE_S", idle_s)
    backends = []
    for _ in range(5):
        async with db.session() as session:
            backends.append(await session.scalar(text("SELECT pg_backend_pid()")))
    assert len(set(backends)) == 1, backends


async def _terminate_pooled(db: Database, endpoints: Endpoints) -> int:
    """Ends the backend of the pool's connection, as a restarted server or a proxy would."""
    async with db.session() as session:
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
    other = Database(endpoints.database_url, pool_size=1)
    try:
        async with other.session() as session:
            assert await session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # Until the backend has exited, its socket may still be open.
        gone = text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid")
        for _ in range(500):
            async with other.session() as session:
                if await session.scalar(gone, {"pid": pid}):
                    break
        else:
            raise AssertionError(f"backend {pid} did not exit")
    finally:
        await other.dispose()
    assert isinstance(pid, int)
    return pid


async def test_a_dropped_connection_idle_for_a_while_is_replaced_at_checkout(
    db: Database, endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "PING_IDLE_S", 0.0)  # every checkout pings
    gone = await _terminate_pooled(db, endpoints)
    async with db.session() as session:  # the ping fails, the pool connects anew: no error
        assert await session.scalar(text("SELECT pg_backend_pid()")) != gone


async def test_a_connection_closed_by_the_server_just_after_use_is_replaced_without_a_ping(
    db: Database, endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection used within PING_IDLE_S is not pinged, yet one whose server ended it (a restart,
    a terminated backend) is still replaced at checkout: asyncpg saw its socket close."""
    monkeypatch.setattr(engine, "PING_IDLE_S", 60.0)
    gone = await _terminate_pooled(db, endpoints)
    async with db.session() as session:
        assert await session.scalar(text("SELECT pg_backend_pid()")) != gone
