"""One Redis subscription per process, fanned out in memory to the process's event streams.

A stream used to open a Redis pub/sub connection of its own. Redis-py's pool holds at most 100, so
the 101st stream of a process fell back to polling PostgreSQL, and `/ready`'s ping and the rate
limiter, which share the pool, failed with it. Now the hub holds one pub/sub connection: a session's
channel is subscribed while at least one stream of this process follows it, and each message is read
and parsed once, then handed to every stream of that session.

What a stream gets (`Subscription`):

- `subscribe` returns once Redis has confirmed the channel's subscription (`SUBSCRIBE_TIMEOUT_S`), so
  nothing published after it returns is missed; None if Redis cannot be reached in that time.
- `next(within)` the next frame, in the order Redis sent them; None after `within` seconds without one.
- `SubscriptionLost` once the frames delivered before it are read, when Redis failed (every stream of
  the process learns it at once) or when this stream fell `MAX_PENDING` frames behind (a reader that
  stopped reading must not hold the process's memory). Either way the stream does what it did when
  its own connection failed: it catches up from PostgreSQL, which holds every stored event, and
  subscribes again. Live-only frames missed meanwhile are lost, which they may be by design.

The first `subscribe` after a failure opens a new connection; while Redis stays away, the streams
that ask share one attempt at a time rather than each knocking on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
import redis.asyncio as redis
import structlog
from redis.exceptions import RedisError

from core.schemas import events as schemas
from services.events import LiveFrame

log = structlog.get_logger("everloop.events")

SUBSCRIBE_TIMEOUT_S = 2.0
# A stream this many frames behind its reader is dropped (and catches up from PostgreSQL): a turn's
# deltas come in hundreds, so a reader keeping up is never near it; one that stopped reading is.
MAX_PENDING = 2000
# The reader wakes this often when nothing arrives, so redis-py's health check (a PING every
# `health_check_interval`) runs and a connection that died silently is noticed.
READ_TIMEOUT_S = 5.0
CLEANUP_TIMEOUT_S = 5.0

_REDIS_ERRORS = (RedisError, OSError, TimeoutError)

# What a session's channel carries (`services.events`): a stored event, or a live-only frame.
Frame = schemas.Event | LiveFrame


class _Probe(msgspec.Struct, kw_only=True):
    type: str
    sequence: int | None = None


def parse_frame(raw: bytes | str) -> Frame | None:
    """A channel message as a stored event or an ephemeral frame; None if it is neither."""
    try:
        probe = msgspec.json.decode(raw, type=_Probe)
        if probe.sequence is not None:
            return msgspec.json.decode(raw, type=schemas.Event)
        return msgspec.json.decode(raw, type=LiveFrame)
    except msgspec.DecodeError:  # ValidationError is one too
        return None


class SubscriptionLost(Exception):
    """The subscription no longer delivers: catch up from PostgreSQL and subscribe again."""


class Subscription:
    """One stream's view of one session's channel."""

    def __init__(self, hub: Hub, key: bytes) -> None:
        self._hub = hub
        self.key = key
        self._frames: deque[Frame] = deque()
        self._lost = False
        self.closed = False
        # Per-frame costs are paid a thousand times when a thousand streams follow one session, so
        # the wait is a bare future, and its deadline one timer that is moved only when it has to
        # wake earlier. (`asyncio.timeout` per wait armed and cancelled a timer per frame per
        # stream: an eighth of the API's CPU in the fan-out bench.)
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        # uvloop's `call_at` for a time already past returns a plain Handle, with no `when()`: the
        # time a timer was set for is kept here.
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0

    async def next(self, within: float) -> Frame | None:
        """The next frame; None if none came within `within` seconds. Raises `SubscriptionLost`."""
        if not self._frames and not self._lost and within > 0:
            loop = asyncio.get_running_loop()
            self._deadline = loop.time() + within
            if self._timer is None or self._timer_at > self._deadline:
                if self._timer is not None:
                    self._timer.cancel()
                self._arm(loop)
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._frames:
            return self._frames.popleft()
        if self._lost:
            raise SubscriptionLost
        return None

    async def aclose(self) -> None:
        """Leaves the channel; the last stream of the process to leave it waits for Redis to confirm
        the unsubscribe (briefly, shielded: it runs as the stream ends, often while cancelled)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.closed:
            self.closed = True
            await self._hub._leave(self)

    def _timed_out(self) -> None:
        self._timer = None  # a timer replaced is cancelled: this is the one last set, for `_timer_at`
        if self._waiter is None:
            return  # not waiting: the next wait arms a timer of its own
        if self._deadline > self._timer_at:  # it moved later since this timer was set
            self._arm(self._waiter.get_loop())
        else:
            self._wake()

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer_at = self._deadline
        self._timer = loop.call_at(self._deadline, self._timed_out)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _deliver(self, frame: Frame) -> None:
        if self._lost:
            return
        if len(self._frames) >= MAX_PENDING:
            self._frames.clear()  # what it missed is in PostgreSQL; the live-only frames may go
            self._lose()
            return
        self._frames.append(frame)
        self._wake()

    def _lose(self) -> None:
        self._lost = True
        self._wake()


@dataclass
class _Channel:
    # Resolved when Redis confirms the subscription: from then on nothing published is missed.
    ready: asyncio.Future[None]
    subs: set[Subscription] = field(default_factory=set)


class Hub:
    """The process's one pub/sub connection to Redis, opened on first use."""

    def __init__(self, bus: redis.Redis) -> None:
        self._bus = bus
        self._pubsub: redis.client.PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._channels: dict[bytes, _Channel] = {}
        # Redis confirms SUBSCRIBE commands in the order they were sent: a channel's futures wait
        # in that order, so a reply is never taken for a later command's.
        self._confirming: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._unconfirming: dict[bytes, deque[asyncio.Future[None]]] = {}  # likewise UNSUBSCRIBEs
        # Commands go out one at a time: "is this channel still wanted?" and the UNSUBSCRIBE that
        # follows must not let a SUBSCRIBE for it in between.
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # A channel of the hub's own, subscribed for as long as the connection lives (see `_connected`).
        self._home = f"everloop:hub:{uuid.uuid4().hex}".encode()

    @property
    def channels(self) -> int:
        """Channels this process is subscribed to (for tests and metrics)."""
        return len(self._channels)

    async def subscribe(self, key: str) -> Subscription | None:
        """A subscription to channel `key`, confirmed by Redis; None if Redis cannot be reached."""
        sub = Subscription(self, key.encode())
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                ready = await self._join(sub)
                # Shielded: the future is shared by every stream joining the channel meanwhile.
                await asyncio.shield(ready)
        except Exception as exc:  # Redis away, or redis-py surprised: the stream polls meanwhile
            log.debug("event stream cannot subscribe", channel=key, error=repr(exc))
            await sub.aclose()
            return None
        except BaseException:
            await sub.aclose()
            raise
        return sub

    async def close(self) -> None:
        """Ends the connection; every open subscription is lost (called when the process stops)."""
        async with self._lock:
            self._closed = True  # a stream still open must not open a new connection after this
            pubsub, self._pubsub = self._pubsub, None
            self._forget(ConnectionError("the event hub was closed"))
        if pubsub is not None:
            await self._release(pubsub)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _join(self, sub: Subscription) -> asyncio.Future[None]:
        async with self._lock:
            pubsub = await self._connected()
            channel = self._channels.get(sub.key)
            if channel is None:
                channel = _Channel(ready=asyncio.get_running_loop().create_future())
                self._channels[sub.key] = channel
                self._confirming.setdefault(sub.key, deque()).append(channel.ready)
                try:
                    await pubsub.subscribe(sub.key)
                except BaseException as exc:
                    self._broken(pubsub, exc)
                    raise
            channel.subs.add(sub)
            return channel.ready

    async def _connected(self) -> redis.client.PubSub:
        """The pub/sub connection, opened (with its reader) if there is none. Under `_lock`."""
        if self._pubsub is not None:
            return self._pubsub
        if self._closed:
            raise ConnectionError("the event hub is closed")
        pubsub = self._bus.pubsub()
        try:
            await pubsub.connect()  # type: ignore[no-untyped-call]
            # Subscribed to something at all times: redis-py sends a command on a pub/sub connection
            # that follows nothing with a health-check PING whose answer it reads in the sending
            # task, while the reader below waits on the same socket ("readuntil() called while
            # another coroutine is already waiting"). Sent before the reader starts.
            await pubsub.subscribe(self._home)
        except BaseException:
            await self._release(pubsub)
            raise
        self._pubsub = pubsub
        self._reader = self._spawn(self._read(pubsub))
        return pubsub

    async def _leave(self, sub: Subscription) -> None:
        channel = self._channels.get(sub.key)
        if channel is None or sub not in channel.subs:
            return
        channel.subs.discard(sub)
        if not channel.subs:
            del self._channels[sub.key]
            if self._pubsub is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT_S):
                    await self._unsubscribe(self._pubsub, sub.key)

    async def _unsubscribe(self, pubsub: redis.client.PubSub, key: bytes) -> None:
        async with self._lock:
            if pubsub is not self._pubsub or key in self._channels:
                return  # the connection is gone, or a stream joined the channel again meanwhile
            done = asyncio.get_running_loop().create_future()
            self._unconfirming.setdefault(key, deque()).append(done)
            try:
                await pubsub.unsubscribe(key)
            except _REDIS_ERRORS as exc:
                self._broken(pubsub, exc)
                return
        await done  # outside the lock: others need not wait for this round trip

    async def _read(self, pubsub: redis.client.PubSub) -> None:
        """Reads the connection until it fails, handing each message to its channel's streams."""
        try:
            while True:
                message = await pubsub.get_message(timeout=READ_TIMEOUT_S)
                if message is not None:
                    self._dispatch(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever ended the reader, the streams must know
            log.warning("event hub lost redis", error=str(exc))
            async with self._lock:
                self._broken(pubsub, exc)

    def _dispatch(self, message: dict[str, object]) -> None:
        key = message.get("channel")
        if not isinstance(key, bytes):
            return
        kind = message.get("type")
        if kind in ("subscribe", "unsubscribe"):
            confirming = self._confirming if kind == "subscribe" else self._unconfirming
            waiting = confirming.get(key)
            if waiting:
                ready = waiting.popleft()
                if not waiting:
                    del confirming[key]
                if not ready.done():
                    ready.set_result(None)
        elif kind == "message":
            channel = self._channels.get(key)
            data = message.get("data")
            if channel is None or not isinstance(data, bytes):
                return
            frame = parse_frame(data)  # once, however many streams follow the session
            if frame is None:
                log.warning("unreadable frame on the event channel", channel=key.decode())
                return
            for sub in list(channel.subs):
                sub._deliver(frame)

    def _broken(self, pubsub: redis.client.PubSub, exc: BaseException) -> None:
        """`pubsub` failed: if it is the current connection, every stream on it is told. Under `_lock`."""
        if pubsub is not self._pubsub:
            return
        self._pubsub = None
        self._forget(exc)
        self._spawn(self._release(pubsub))

    def _forget(self, exc: BaseException) -> None:
        for channel in self._channels.values():
            for sub in channel.subs:
                sub._lose()
        for waiting in self._confirming.values():
            for ready in waiting:
                if not ready.done():
                    ready.set_exception(ConnectionError(f"redis: {exc}"))
                    ready.exception()  # retrieved: a joiner that gave up must not leave it unread
        for waiting in self._unconfirming.values():
            for done in waiting:
                if not done.done():
                    done.set_result(None)  # no connection, no subscription
        self._channels.clear()
        self._confirming.clear()
        self._unconfirming.clear()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        self._reader = None

    async def _release(self, pubsub: redis.client.PubSub) -> None:
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(CLEANUP_TIMEOUT_S),
            contextlib.suppress(*_REDIS_ERRORS),
        ):
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
