"""One async engine per process, and the session factory handlers and activities use.

Every wait on PostgreSQL is bounded (`DatabaseTimeouts`, the DB_* settings), and whatever the driver
raises when the server is away reaches callers as a SQLAlchemy error, which
`core.db.availability.is_unavailable` recognises:

- connecting: asyncpg's `timeout`; a refused or timed-out connect becomes an `OperationalError`;
- checking out a pooled connection that sat unused for `PING_IDLE_S` or more: a ping that waits at
  most DB_CONNECT_TIMEOUT (SQLAlchemy's own pre-ping would wait as long as a statement may, and lets a
  timeout escape unwrapped). A connection back from its last use within `PING_IDLE_S` gets no round
  trip, so a busy process (an agent's steps, one after the other) pays no ping per transaction; it
  is only checked locally, for a socket the server has closed (a restart, a terminated backend),
  and replaced if so. A server that vanished without closing anything in that moment is met by the
  statement's own time limit below;
- each statement: PostgreSQL's `statement_timeout`, and asyncpg's `command_timeout` a little later
  for a server that says nothing at all (a hung server never enforces its own timeout). Such a
  connection is dropped at once: its transaction can then never commit, whatever the server
  finds in its socket when it wakes.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from core.settings import DatabaseTimeouts

# The client waits this much longer than the server's statement_timeout: a live server cancels the
# statement itself (cleanly, keeping the connection), so the client's timer fires only for a hung one.
CLIENT_GRACE_S = 1.0
_FRESH = "everloop_fresh"  # connection-record flag: connected just now, so no need to ping it
_RETURNED = "everloop_returned"  # connection-record info: when it was last checked in (monotonic)
# A pooled connection used this recently is not pinged at checkout (see the module's docstring).
PING_IDLE_S = 2.0


def async_url(url: str) -> str:
    """Accepts the usual `postgresql://` and `postgres://` forms and selects the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        timeouts: DatabaseTimeouts | None = None,
    ) -> None:
        self.timeouts = limits = timeouts or DatabaseTimeouts()
        self.engine: AsyncEngine = create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=limits.pool_s,
            pool_recycle=1800,
            pool_pre_ping=False,  # replaced by `ping` in `_bound_waits`, which has a time limit of its own
            # The most recently returned connection goes out first: under light load the same few
            # stay recent (no ping) and the rest idle, instead of every one aging in turn.
            pool_use_lifo=True,
            connect_args={
                "timeout": limits.connect_s,
                "command_timeout": limits.statement_s + CLIENT_GRACE_S,
                "server_settings": {
                    "statement_timeout": _milliseconds(limits.statement_s),
                    "idle_in_transaction_session_timeout": _milliseconds(limits.idle_in_transaction_s),
                },
            },
        )
        _bound_waits(self.engine.sync_engine, limits)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

    def session(self) -> AsyncSession:
        return self.sessions()


def _milliseconds(seconds: float) -> str:
    return str(max(int(seconds * 1000), 1))


def _bound_waits(engine: Engine, limits: DatabaseTimeouts) -> None:
    dbapi = engine.dialect.loaded_dbapi

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: ConnectionPoolEntry, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except (OSError, TimeoutError) as exc:
            # asyncpg raises these bare; as a DB-API error SQLAlchemy wraps them like any other.
            reason = f"no answer within {limits.connect_s:g} s" if isinstance(exc, TimeoutError) else exc
            raise dbapi.OperationalError(f"cannot connect to PostgreSQL: {reason}", exc) from exc

    @event.listens_for(engine, "connect")
    def fresh(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_FRESH] = True

    @event.listens_for(engine, "checkin")
    def returned(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        if record.info.pop(_FRESH, False):
            return
        if time.monotonic() - record.info.get(_RETURNED, 0.0) < PING_IDLE_S:
            # No round trip: asyncpg already knows if the server closed the socket meanwhile.
            if dbapi_connection.driver_connection.is_closed():
                raise sa_exc.DisconnectionError("pooled connection was closed by the server")
            return
        try:
            # A real statement: asyncpg fails on an empty one (";"), which discarded every pooled
            # connection at checkout and made each transaction connect anew.
            dbapi_connection.run_async(lambda conn: conn.execute("SELECT 1", timeout=limits.connect_s))
        except TimeoutError as exc:
            # A hung server: a new connection would not be answered either, so no retry here.
            dbapi_connection.driver_connection.terminate()
            raise dbapi.OperationalError(
                f"PostgreSQL did not answer a ping within {limits.connect_s:g} s", exc
            ) from exc
        except Exception as exc:
            # Closed since it was last used (a restarted server): the pool connects anew, once.
            raise sa_exc.DisconnectionError(f"pooled connection is gone: {exc}") from exc

    @event.listens_for(engine, "handle_error")
    def statement_timeout(context: ExceptionContext) -> BaseException | None:
        error = context.original_exception
        if context.sqlalchemy_exception is not None or not isinstance(error, TimeoutError | OSError):
            return None
        # No answer to a statement or COMMIT within command_timeout. The connection is in an unknown
        # state: it is dropped now (not after a ROLLBACK that would wait as long again), which
        # also means the server never sees a COMMIT for this transaction if it had not yet.
        connection = context.connection
        driver = (
            None if connection is None or connection.invalidated else connection.connection.driver_connection
        )
        if driver is not None:
            driver.terminate()
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False  # the others may be fine (a slow statement)
        waited = limits.statement_s + CLIENT_GRACE_S
        reason = f"no answer within {waited:g} s" if isinstance(error, TimeoutError) else str(error)
        wrapped = dbapi.OperationalError(f"PostgreSQL did not answer: {reason}", error)
        wrapped.__cause__ = error
        return sa_exc.OperationalError(
            context.statement, context.parameters, wrapped, hide_parameters=True, connection_invalidated=True
        )
