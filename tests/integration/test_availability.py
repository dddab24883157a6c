"""`is_unavailable` against errors a real database raises: the database away is retried, anything
else (a bad statement, a conflict) is not; `persist` gives up after its window. A refusal that merely
involved the network: tests/unit/test_availability.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from temporalio.exceptions import ApplicationError

import activities.persist
from activities.persist import persist
from core.db import Database
from core.db.availability import is_unavailable
from core.schemas.turns import DATABASE_UNAVAILABLE
from core.settings import DatabaseTimeouts
from everloop.stack import Endpoints
from everloop.stack.process import free_port


def _closed_port_url(endpoints: Endpoints) -> str:
    base, _, rest = endpoints.database_url.rpartition("@")
    _, _, database = rest.partition("/")
    return f"{base}@127.0.0.1:{free_port()}/{database}"


async def _error_of(db: Database, statement: str) -> SQLAlchemyError:
    with pytest.raises(SQLAlchemyError) as raised:
        async with db.session() as session:
            await session.execute(text(statement))
    return raised.value


async def test_a_refused_connection_is_unavailable(endpoints: Endpoints) -> None:
    db = Database(_closed_port_url(endpoints), timeouts=DatabaseTimeouts(connect_s=2))
    try:
        assert is_unavailable(await _error_of(db, "SELECT 1"))
    finally:
        await db.dispose()


async def test_a_statement_the_server_cancels_at_its_timeout_is_unavailable(endpoints: Endpoints) -> None:
    db = Database(endpoints.database_url, timeouts=DatabaseTimeouts(statement_s=0.2))
    try:
        assert is_unavailable(await _error_of(db, "SELECT pg_sleep(2)"))
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    "statement",
    ["SELEC 1", "SELECT * FROM no_such_table", "SELECT 1/0", "SELECT 'x'::integer"],
    ids=["syntax", "missing table", "division by zero", "bad cast"],
)
async def test_a_wrong_statement_is_not_unavailable(endpoints: Endpoints, statement: str) -> None:
    db = Database(endpoints.database_url)
    try:
        assert not is_unavailable(await _error_of(db, statement))
    finally:
        await db.dispose()


async def test_persist_gives_up_after_its_window_with_a_final_error(
    endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(activities.persist, "STORE_RETRY_WINDOW", timedelta(seconds=1.5))
    db = Database(_closed_port_url(endpoints), timeouts=DatabaseTimeouts(connect_s=1))
    attempts = 0

    async def work(session: object) -> None:
        nonlocal attempts
        attempts += 1
        await db.ping()

    try:
        with pytest.raises(ApplicationError) as raised:
            await persist(db, lambda s: work(s), what="a test step")
    finally:
        await db.dispose()
    assert raised.value.type == DATABASE_UNAVAILABLE
    assert raised.value.non_retryable
    assert attempts >= 2, "it waited and tried again before giving up"
