"""Following a session's events: the stored ones from Postgres, then new ones as Redis announces
them, with no gap and no duplicate. All state is in Postgres and Redis, so any API process can serve
any reader.

The session's channel (`services.events.channel`) carries two kinds of JSON frame:

- a stored event, as `services.events.publish` sends it after commit: the
  `core.schemas.events.Event` envelope, with `id` and `sequence`;
- an ephemeral frame, never stored and never replayed, seen only by readers connected at the time:
  `{"type": "output.message.delta", "session_id": "<uuid>", "ts": "...", "sequence": null,
  "context": {...}, "data": {"message_id": "...", "delta": "..."}}` (likewise
  `output.message.reset`; `services.events.LiveFrame`). It has no `id` on the channel: each
  reader's follower gives it one as it sends it (`event_log.live_id`), naming the last stored
  event that reader was sent, so a client resuming from it gets exactly what follows.

Subscriptions go through the process's hub (`services.event_hub`): one Redis connection per
process, however many streams it serves. The follower subscribes before it reads Postgres; an event
committed in between comes from both, and the copy whose sequence was already sent is dropped. A
stored event that arrives ahead of its predecessors (parallel writers publish out of order) first has
the missing range read from Postgres: sequences are handed out under the session row's lock, so those
events are committed already. While Redis is unreachable (or the hub dropped a follower that fell
too far behind) the follower polls Postgres, and it goes back to Redis once Redis answers.

While Postgres is away (`core.db.availability.is_unavailable`) the stream stays open rather than
ending: a browser's EventSource that reconnected would meet a 503, and it gives up for good on any
answer but 200. The follower drops its subscription (nothing can be sent in order meanwhile, and
live frames would pile up unread), says so in a comment, keeps the connection alive, and asks
Postgres again with backoff; once it answers, it subscribes again and catches up from where it
stopped, so the reader misses nothing.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TypeVar

import anyio
import msgspec
import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database
from core.db.availability import is_unavailable
from core.db.base import utcnow
from core.memo import IdentityMemo
from core.schemas import events as schemas
from services import event_log
from services.event_hub import Hub, Subscription, SubscriptionLost
from services.event_log import TypeFilter
from services.events import LiveFrame, channel, to_schema
from services.last_sequences import LastSequences

log = structlog.get_logger("everloop.events")

KEEPALIVE_S = 15.0  # a comment frame after this long without one, so proxies keep the stream open
POLL_S = 1.0  # how often Postgres is read (and Redis retried) while Redis is unreachable
QUERY_TIMEOUT_S = 30.0
BATCH = 200
# While Postgres is away: the first wait before asking again, doubling up to the last (with jitter,
# so the streams of a process do not all knock at once when it comes back).
DB_RETRY_FIRST_S = 1.0
DB_RETRY_MAX_S = 10.0

KEEPALIVE = "keep-alive"
CREDENTIAL_EXPIRED = "credential expired"
CREDENTIAL_REVOKED = "credential revoked"
POLLING = "redis unavailable: polling the database"
LIVE = "redis available again: following live"
DB_UNAVAILABLE = "database unavailable: retrying"
DB_AVAILABLE = "database available again"

T = TypeVar("T")

# What a read of Postgres raises when it fails; `is_unavailable` tells an outage from the rest.
_DATABASE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)


class Connected(msgspec.Struct, kw_only=True, frozen=True):
    """First item: the subscription is in place, so nothing published from now on is missed."""


class Stored(msgspec.Struct, kw_only=True, frozen=True):
    event: schemas.Event


class Ephemeral(msgspec.Struct, kw_only=True, frozen=True):
    event: schemas.LiveEvent


class Comment(msgspec.Struct, kw_only=True, frozen=True):
    text: str


Item = Connected | Stored | Ephemeral | Comment


def _stamped(frame: LiveFrame, last: int) -> Ephemeral:
    """The frame as a reader gets it after stored event `last`. Its id names `last`: every stored event
    up to it has been sent (or filtered out) and none after it, as the frames go out one at a time in
    order. Readers at the same position get the same frame, id included (`_STAMPED`)."""
    return Ephemeral(
        event=schemas.LiveEvent(
            id=event_log.live_id(last),
            type=frame.type,
            ts=frame.ts or utcnow(),
            session_id=frame.session_id,
            context=frame.context,
            data=frame.data,
        )
    )


# A frame reaches every follower of its session as one object (`services.event_hub`): stamped once
# per position, not once per reader, and the same `Ephemeral` lets the API encode it once too.
_STAMPED: IdentityMemo[LiveFrame, Ephemeral] = IdentityMemo()


class Follower:
    """One reader's position in one session; `follow()` yields what to send it, forever."""

    def __init__(
        self,
        db: Database,
        hub: Hub,
        sequences: LastSequences,
        session_id: uuid.UUID,
        after: int,
        types: TypeFilter,
        *,
        keepalive_s: float | None = None,
        poll_s: float | None = None,
        until: float | None = None,
        allowed: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """`until` (event-loop time) ends the stream when the reader's credential expires; `allowed`
        is asked at every keep-alive whether the credential still holds (logout, a revoked key)."""
        self.db = db
        self.hub = hub
        self.sequences = sequences
        self.session_id = session_id
        self.last = after  # the highest sequence dealt with, sent or filtered out
        self.types = types
        self.keepalive_s = KEEPALIVE_S if keepalive_s is None else keepalive_s
        self.poll_s = POLL_S if poll_s is None else poll_s
        self.gone = False  # the session was deleted: the stream ends
        self.until = until
        self.allowed = allowed
        self.ended: str | None = None  # why the stream stopped early (the credential ran out)
        self._subscription: Subscription | None = None
        self._quiet_since = 0.0
        self._checked_at = 0.0  # when `allowed` was last asked

    async def follow(self) -> AsyncGenerator[Item, None]:
        self._checked_at = asyncio.get_running_loop().time()  # checked when the stream was opened
        try:
            live = await self._subscribe()
            yield self._sent(Connected())
            if not live:
                log.warning("event stream polling: redis unavailable", session_id=str(self.session_id))
                yield self._sent(Comment(text=POLLING))
            while not self.gone and not self._expired():
                try:
                    if not await self._still_allowed():
                        break
                    async for item in self._step():
                        yield item
                except _DATABASE_ERRORS as exc:
                    if not is_unavailable(exc):
                        raise
                    async for item in self._outlast_outage(exc):
                        yield item
            if self.ended:
                yield Comment(text=self.ended)
        except _DATABASE_ERRORS as exc:
            # The client reconnects with Last-Event-ID and resumes where this stream stopped.
            log.warning("event stream ended: database error", session_id=str(self.session_id), error=str(exc))
        finally:
            await self._unsubscribe()

    async def _step(self) -> AsyncIterator[Item]:
        """Catches up from Postgres, then follows Redis until it fails (or polls once without it)."""
        async for item in self._catch_up():
            yield item
        if self._subscription is not None:
            async for item in self._live():
                yield item
            if self._subscription is None and not self.gone and not self.ended:
                yield self._sent(Comment(text=POLLING))
        else:
            await asyncio.sleep(min(self.poll_s, self._left()))
            if self._expired():
                return
            if await self._subscribe():
                log.info("event stream following live again", session_id=str(self.session_id))
                yield self._sent(Comment(text=LIVE))
            elif self._keepalive_due() and await self._still_allowed():
                yield self._sent(Comment(text=KEEPALIVE))

    async def _outlast_outage(self, exc: BaseException) -> AsyncIterator[Item]:
        """Waits until Postgres answers again, keeping the connection alive, then subscribes again
        (before the caller reads Postgres, as at the start). Returns early if the credential expires."""
        log.warning("event stream waiting for the database", session_id=str(self.session_id), error=str(exc))
        await self._unsubscribe()
        yield self._sent(Comment(text=DB_UNAVAILABLE))
        loop = asyncio.get_running_loop()
        delay = DB_RETRY_FIRST_S
        while True:
            # Jitter only spreads the retries of many streams; nothing secret depends on it.
            retry_at = loop.time() + delay * random.uniform(0.5, 1.0)  # noqa: S311
            while (left := retry_at - loop.time()) > 0:
                wake = self._quiet_since + self.keepalive_s - loop.time()
                await asyncio.sleep(max(min(left, wake, self._left()), 0))
                if self._expired():
                    return
                if self._keepalive_due():
                    yield self._sent(Comment(text=KEEPALIVE))
            try:
                await self.sequences.get(self.session_id)
            except _DATABASE_ERRORS as again:
                if not is_unavailable(again):
                    raise
                delay = min(delay * 2, DB_RETRY_MAX_S)
                continue
            break
        log.info("event stream: database available again", session_id=str(self.session_id))
        live = await self._subscribe()
        yield self._sent(Comment(text=DB_AVAILABLE if live else POLLING))

    def _left(self) -> float:
        """Seconds until the credential expires (a large number when it does not)."""
        if self.until is None:
            return 86400.0
        return max(self.until - asyncio.get_running_loop().time(), 0.0)

    def _expired(self) -> bool:
        if self.ended is None and self.until is not None and self._left() <= 0:
            self.ended = CREDENTIAL_EXPIRED
        return self.ended is not None

    def _ask_due(self) -> bool:
        """Whether `allowed` is to be asked now: at most once per keep-alive interval, busy stream or
        quiet. A plain check, as it runs for every frame."""
        return (
            self.allowed is not None
            and self.ended is None
            and asyncio.get_running_loop().time() - self._checked_at >= self.keepalive_s
        )

    async def _still_allowed(self) -> bool:
        """Asks `allowed` if it is due (`_ask_due`); whether the stream may go on."""
        if self.allowed is not None and self._ask_due():
            now = asyncio.get_running_loop().time()
            still = await self.allowed()  # if the database is away, asked again once it is back
            self._checked_at = now
            if not still:
                self.ended = CREDENTIAL_REVOKED
        return self.ended is None

    def _sent(self, item: Item) -> Item:
        self._quiet_since = asyncio.get_running_loop().time()
        return item

    def _keepalive_due(self) -> bool:
        return asyncio.get_running_loop().time() - self._quiet_since >= self.keepalive_s

    async def _live(self) -> AsyncIterator[Item]:
        """Forwards what Redis announces until Redis fails or the session is gone."""
        while self._subscription is not None and not self.gone and not self._expired():
            wait = min(self._quiet_since + self.keepalive_s - asyncio.get_running_loop().time(), self._left())
            try:
                frame = await self._subscription.next(within=max(wait, 0))
            except SubscriptionLost:
                log.warning("event stream lost its subscription", session_id=str(self.session_id))
                await self._unsubscribe()
                return
            if (self.ended is not None or self._ask_due()) and not await self._still_allowed():
                return
            if isinstance(frame, LiveFrame):
                # Here, not in a generator of its own as a stored event: a token delta is the
                # commonest frame by far, and a thousand readers of a session may each take it.
                if self.types.allows(frame.type):
                    yield self._sent(_STAMPED.get(frame, self.last, partial(_stamped, frame, self.last)))
            elif frame is not None:
                async for item in self._on_stored(frame):
                    yield item
            if self._keepalive_due():
                # Also a chance to catch an event whose announcement was lost.
                async for item in self._catch_up():
                    yield item
                if self._keepalive_due():
                    yield self._sent(Comment(text=KEEPALIVE))

    async def _on_stored(self, frame: schemas.Event) -> AsyncIterator[Item]:
        if frame.sequence > self.last:
            async for item in self._read_range(frame.sequence - 1):
                yield item
            self.last = frame.sequence
            if self.types.allows(frame.type):
                yield self._sent(Stored(event=frame))

    async def _catch_up(self) -> AsyncIterator[Item]:
        upto = await self.sequences.get(self.session_id)
        if upto is None:
            self.gone = True
            return
        async for item in self._read_range(upto):
            yield item

    async def _read_range(self, upto: int) -> AsyncIterator[Item]:
        """Sends the stored events after `last` up to `upto`, a batch per short DB session."""
        while self.last < upto:
            rows = await self._query(
                partial(
                    event_log.between,
                    session_id=self.session_id,
                    after=self.last,
                    upto=upto,
                    types=self.types,
                    limit=BATCH,
                )
            )
            # Filtered-out events are skipped over too: a short batch means nothing else is left.
            self.last = rows[-1].sequence if len(rows) == BATCH else upto
            for row in rows:
                yield self._sent(Stored(event=to_schema(row)))

    async def _query(self, query: Callable[[AsyncSession], Awaitable[T]]) -> T:
        # Shielded: a client leaving mid-query must not strand the connection outside the pool.
        with anyio.move_on_after(QUERY_TIMEOUT_S, shield=True):
            async with self.db.session() as db:
                return await query(db)
        raise TimeoutError(f"no answer from the database within {QUERY_TIMEOUT_S:.0f} s")

    async def _subscribe(self) -> bool:
        """Subscribes (confirmed by Redis); False, and no subscription, if Redis cannot be reached."""
        await self._unsubscribe()
        self._subscription = await self.hub.subscribe(channel(self.session_id))
        return self._subscription is not None

    async def _unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.aclose()
