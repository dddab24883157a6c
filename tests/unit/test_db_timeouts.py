"""The DB_* settings: their defaults, values from the environment, and bad values. That they reach
every connection: tests/integration/test_db_timeouts.py."""

from __future__ import annotations

import pytest

from core.settings import DatabaseTimeouts, SettingsError, load_settings


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
