"""Requests per credential: GCRA (the generic cell rate algorithm) in one Lua script in Redis.

A bucket is one Redis key holding its "theoretical arrival time" (TAT, microseconds): when it
would be empty again at the sustained rate. A request is admitted when, after adding one emission
interval (60 s / per_minute), the TAT is at most `burst` intervals ahead of now. Read, decide and
write happen in one script, which Redis runs atomically, and the clock is Redis's own (`TIME`), so
any number of API processes, whatever their clocks say, share one exact count. Over any window of
W seconds a bucket admits at most `burst + W * per_minute / 60` requests (rounded up): within a
minute, at most the limit plus the burst.

When Redis cannot be asked the request goes through (fail open, docs/rate_limits.md): limits are a
guard against a key gone wild, not a reason to refuse everyone while Redis restarts.
"""

from __future__ import annotations

import asyncio
import math
import time

import msgspec
import redis.asyncio as redis
import structlog

log = structlog.get_logger("everloop.rate_limit")

# Everything under this prefix is a rate-limit counter (tests/api/test_auth_full.py clears them all).
KEY_PREFIX = "everloop:ratelimit:gcra:"

# KEYS[1]: the bucket. ARGV[1]: emission interval (µs), ARGV[2]: burst.
# Returns {admitted (1|0), remaining, retry_after_us, reset_after_us, now_us}.
# The TAT is written with string.format('%d'): Lua's own number-to-string keeps 14 digits and a
# time in microseconds has 16.
_GCRA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local diff = now - (new_tat - burst * interval)
if diff < 0 then
  return {0, 0, -diff, tat - now, now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor(diff / interval), 0, new_tat - now, now}
"""


class Limits(msgspec.Struct, kw_only=True, frozen=True):
    """A plan, or an admin's own figures: requests per minute (sustained) and burst (at once)."""

    plan: str
    per_minute: int
    burst: int


ENTERPRISE = "enterprise"
# The seed's (Opswald's) plan table; enterprise is custom: its figures are set with it.
PLANS: dict[str, Limits | None] = {
    "free": Limits(plan="free", per_minute=100, burst=200),
    "pro": Limits(plan="pro", per_minute=1_000, burst=2_000),
    "teams": Limits(plan="teams", per_minute=5_000, burst=10_000),
    ENTERPRISE: None,
}
MAX_PER_MINUTE = 10_000_000  # an emission interval of 6 µs: still a whole number of microseconds


class Decision(msgspec.Struct, kw_only=True, frozen=True):
    admitted: bool
    limit: int  # requests per minute
    remaining: int  # requests that may be sent right now (at most the burst)
    reset_at: int  # unix time (s) by which the bucket is full again
    retry_after_s: int  # when refused: whole seconds after which a request is admitted; else 0

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if not self.admitted:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


# A request waits for Redis up to TIMEOUT_S (RATE_LIMIT_TIMEOUT_S), counted from when it asks for a
# slot (IN_FLIGHT below), not from when it gets one: behind a hung Redis every slot is taken, and a
# deadline that started only at the slot let queued requests wait ceil(n / IN_FLIGHT) deadlines.
# The wait is long on purpose: it includes the time this process's event loop takes to get back to
# the request, which on a loaded machine is far past a Redis round trip (0.25 s, then 3 s, let
# requests through unlimited in tests/integration/test_rate_limit_processes.py on a busy 2-core
# box). A Redis that is down refuses the connection at once. Once it has failed, requests go through
# without asking it (those queued for a slot meanwhile too), and one request at a time (no sooner
# than PAUSE_S after the last failure) asks it again: a hung Redis costs the requests already
# waiting on it up to one deadline, then that one asking request per TIMEOUT_S + PAUSE_S, not every
# request. The log says so once per LOG_EVERY_S.
TIMEOUT_S = 10.0
PAUSE_S = 1.0
LOG_EVERY_S = 60.0
# Script calls in flight at once per process; the others queue here. The client's pool opens one
# connection per concurrent command: a volley of 60 requests opened 60 connections at once, and on a
# loaded machine some of those connects ran past the client's 2 s connect timeout (a "failed" Redis
# that was only busy being connected to). A handful of connections carries thousands of calls a
# second (one is ~0.2 ms).
IN_FLIGHT = 16


class Limiter:
    """Asks Redis, one script call per request; None when it cannot (the caller lets it through)."""

    def __init__(self, client: redis.Redis, *, timeout_s: float = TIMEOUT_S) -> None:
        self._script = client.register_script(_GCRA)
        self._timeout_s = timeout_s
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)
        self._down = False  # Redis failed and has not answered since
        self._probe_at = 0.0  # while down: when the next request may ask it again
        self._logged_at: float | None = None
        self._let_through = 0

    async def take(self, bucket: str, limits: Limits) -> Decision | None:
        if self._down:
            now = time.monotonic()
            if now < self._probe_at:
                self._let_through += 1
                return None
            # This request asks; the others go through meanwhile, whatever this one waits.
            self._probe_at = now + self._timeout_s + PAUSE_S
        was_down = self._down
        interval_us = 60_000_000 // limits.per_minute
        try:
            # The deadline covers the wait for a slot as well as the call (see TIMEOUT_S).
            async with asyncio.timeout(self._timeout_s), self._in_flight:
                if self._down and not was_down:
                    # Redis was found failing while this request queued: it goes through now, like
                    # those that came after the failure, instead of taking its turn at the wait.
                    self._let_through += 1
                    return None
                result = await self._script(keys=[KEY_PREFIX + bucket], args=[interval_us, limits.burst])
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        if self._down:
            log.warning("rate limits on again: Redis answers", let_through=self._let_through)
            self._down, self._logged_at, self._let_through = False, None, 0
        admitted, remaining, retry_after_us, reset_after_us, now_us = (int(v) for v in result)
        return Decision(
            admitted=bool(admitted),
            limit=limits.per_minute,
            remaining=remaining,
            reset_at=math.ceil((now_us + reset_after_us) / 1_000_000),
            # Whole seconds, rounded up: a retry after that long finds the bucket with room.
            retry_after_s=max(1, math.ceil(retry_after_us / 1_000_000)) if not admitted else 0,
        )

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down = True
        self._probe_at = now + PAUSE_S
        self._let_through += 1
        if self._logged_at is None or now - self._logged_at >= LOG_EVERY_S:
            # Once per interval, not per request: an outage would otherwise flood the log.
            log.warning(
                "rate limits off: Redis does not answer, requests go through unlimited",
                error=f"{type(exc).__name__}: {str(exc)[:300]}",
                let_through=self._let_through,
            )
            self._logged_at = now
