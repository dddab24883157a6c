"""Tells a database that is away (down, restarting, unreachable, hung) from a request that is wrong.

The first is the infrastructure's failure: the API answers 503 and the loop waits it out without
spending a step's budget for provider or tool errors. Everything else is the work's own failure,
and must never be taken for the first: a step would wait for hours for something no wait can fix.
So only errors of the database layer itself are looked at (SQLAlchemy's, asyncpg's, and the bare
connection errors a driver raises), never an exception merely caused by one.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa

# SQLSTATE classes that mean "the server cannot serve you right now", not "your statement is wrong":
# 08 connection exception, 53 insufficient resources (too many connections, out of memory or disk),
# 57P admin/crash shutdown and "cannot connect now" (starting up or recovering), 58 system error.
_AWAY_CLASSES = ("08", "53", "57P", "58")
# Lock or serialization conflicts that a retry of the whole transaction resolves, and a statement the
# server cancelled at `statement_timeout` (a lock wait or an overloaded server, as seen from here).
_RETRY_STATES = {"40001", "40P01", "57014"}


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database could not be reached or did not answer in time, so the
    same work may succeed once it is back."""
    if isinstance(exc, sa.DBAPIError):
        if exc.connection_invalidated:
            return True
        state = _state(exc.orig)
        if state is not None:
            return _away_state(state)
        if isinstance(exc, sa.OperationalError):
            # Without a SQLSTATE: a connect that failed or a statement with no answer in time, as
            # core/db/engine.py reports them.
            return True
        # The asyncpg adapter keeps the driver's own exception as the cause of `orig`.
        return _lost_connection(getattr(exc.orig, "__cause__", None))
    if isinstance(exc, sa.TimeoutError | sa.DisconnectionError):  # no pooled connection in time
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = _state(exc)
        return state is not None and _away_state(state)
    return _lost_connection(exc)


def _state(error: object) -> str | None:
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return state if isinstance(state, str) else None


def _away_state(state: str) -> bool:
    return state.startswith(_AWAY_CLASSES) or state in _RETRY_STATES


def _lost_connection(error: BaseException | None) -> bool:
    """A driver-level error that means the connection is gone or never came: refused, reset, closed
    under us, or no answer in time (asyncpg's client-side argument errors are not among them)."""
    if isinstance(error, asyncpg.exceptions.ConnectionDoesNotExistError | ConnectionError | TimeoutError):
        return True
    if isinstance(error, asyncpg.InterfaceError):
        text = str(error).lower()
        return "connection" in text and ("closed" in text or "lost" in text)
    return False
