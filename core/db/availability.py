"""Tells a database that is away (down, restarting, unreachable, hung) from a request that is wrong.

The first is the infrastructure's failure: the API answers 503 and the loop waits it out without
spending a step's budget for provider or tool errors. Everything else is the work's own failure.
"""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import exc as sa

# SQLSTATE classes that mean "the server cannot serve you right now", not "your statement is wrong":
# 08 connection exception, 53 insufficient resources (too many connections, out of memory or disk),
# 57P admin/crash shutdown and "cannot connect now" (starting up or recovering), 58 system error,
# and 57014 query_canceled: the server's statement_timeout (DB_STATEMENT_TIMEOUT), the same "no
# answer in time" as the client's own timeout, which a hung server leaves to the client.
_AWAY_CLASSES = ("08", "53", "57P", "58", "57014")
# A lock or serialization conflict that a retry of the whole transaction resolves.
_RETRY_STATES = {"40001", "40P01"}


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says the database could not be reached or did not answer
    in time, so the same work may succeed once it is back."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _away(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _away(exc: BaseException) -> bool:
    if isinstance(exc, sa.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if isinstance(state, str):
            return state.startswith(_AWAY_CLASSES) or state in _RETRY_STATES
        # The driver's own connection-level errors carry no SQLSTATE (the adapter wraps them).
        return isinstance(exc, sa.InterfaceError | sa.OperationalError)
    if isinstance(exc, sa.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None)
        return isinstance(state, str) and (state.startswith(_AWAY_CLASSES) or state in _RETRY_STATES)
    # Refused or reset connections, DNS failures, and a connect or command timeout.
    return isinstance(
        exc,
        asyncpg.InterfaceError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | ConnectionError
        | OSError
        | asyncio.TimeoutError,
    )
