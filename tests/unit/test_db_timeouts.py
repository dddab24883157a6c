"""The DB_* settings reach every connection: PostgreSQL enforces its part, and the client's own
limits turn a statement that is never answered into an error the API maps to a 503."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.db import Database
from core.db.availability import is_unavailable
from core.settings import DatabaseTimeouts, SettingsError, load_settings
from everloop.stack import Endpoints


def test_defaults_and_values_from_the_environment() -> None:
    assert load_settings({}).database_timeouts == DatabaseTimeouts(
        connect_s=5.0, pool_s=5.0, statement_s=10.0, idle_in_transaction_s=60.0
    )
    env = {
        "DB_CONNECT_TIMEOUT": "2",
        "DB_POOL_TIMEOUT": "3.5",
        "DB_STATEMENT_TIMEOUT": "30",
        "DB_IDLE_IN_TRANSACTION_TIMEOUT": "120",
    }
    assert load_settings(env).database_timeouts == DatabaseTimeouts(
        connect_s=2.0, pool_s=3.5, statement_s=30.0, idle_in_transaction_s=120.0
    )


@pytest.mark.parametrize("value", ["0", "-1", "soon", "3601"])
def test_a_bad_value_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="DB_STATEMENT_TIMEOUT: expected seconds"):
        load_settings({"DB_STATEMENT_TIMEOUT": value})


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
