"""The rate limiter's added latency per request (issue 16: target p99 <= 1 ms).

    .venv/bin/python -m tests.bench.rate_limit [--iterations 2000] [--warmup 200]

One embedded stack (as the tests run it). Measured, after `--warmup` discarded rounds:
 (0) a Redis PING from this process: the round trip, the floor of anything asked of Redis;
 (a) the Lua call alone: `core.rate_limit.Limiter.take` from this process to the embedded Redis,
     one bucket, one call at a time (one EVALSHA round trip and its decoding);
 (b) what the middleware calls: `services.rate_limits.RateLimits.take` for an API key's identity
     (its limits from the process's cache, then (a));
 (c) request latency with and without the limiter: two `everloop api` processes (uvicorn, real
     HTTP, AUTH_MODE=full) on the same database and Redis, one with RATE_LIMITS=true (a plan too
     large to refuse anything here), one with RATE_LIMITS=false; `GET /v1/capabilities` with the
     same `evr_` key, one keep-alive connection each, the two taken in turn per round so drift hits
     both alike. The added latency is the difference of their percentiles, and the percentiles of
     the paired per-round differences.
Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import httpx

from core import bus
from core.db import Database
from core.identity import Identity
from core.logging import configure_logging
from core.rate_limit import Limiter, Limits
from core.settings import LogFormat, load_settings
from everloop.stack import Endpoints
from services.rate_limits import RateLimits
from tests.bench.loop_latency import pct
from tests.bench.stack import run_on_fresh_stack
from tests.bench.trace_store import account, api_processes

# Large enough that no request of the benchmark is refused: what is measured is the check itself.
NEVER_REFUSED = {
    "RATE_LIMIT_PLAN": "enterprise",
    "RATE_LIMIT_PER_MINUTE": "10000000",
    "RATE_LIMIT_BURST": "10000000",
}


async def timed(call: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    """Milliseconds per call, one call at a time."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def line(name: str, values: list[float]) -> str:
    return f"  {name:<44} p50 {pct(values, 50):7.3f} ms   p99 {pct(values, 99):7.3f} ms   (n={len(values)})"


async def in_process(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    redis = bus.connect(endpoints.redis_url)
    db = Database(endpoints.database_url)
    try:
        limiter = Limiter(redis)
        limits = Limits(plan="enterprise", per_minute=10_000_000, burst=10_000_000)
        bucket = f"bench:{uuid.uuid4()}"
        settings = load_settings({**endpoints.as_env(), "EVERLOOP_DATA_DIR": str(data_dir), **NEVER_REFUSED})
        service = RateLimits(db, redis, settings)
        # An API key's caller (no row in rate_limits: the default plan, read once, then cached).
        who = Identity(
            user_id=uuid.uuid4(),
            email="bench@example.com",
            role="user",
            method="api_key",
            credential_id=uuid.uuid4(),
        )
        await timed(redis.ping, args.warmup)
        ping = await timed(redis.ping, args.iterations)
        await timed(lambda: limiter.take(bucket, limits), args.warmup)
        lua = await timed(lambda: limiter.take(bucket, limits), args.iterations)
        await timed(lambda: service.take(who), args.warmup)
        whole = await timed(lambda: service.take(who), args.iterations)
        assert (await limiter.take(bucket, limits)) is not None, "Redis did not answer"
    finally:
        await db.dispose()
        await redis.aclose()
    print("in this process, against the embedded Redis:")
    print(line("(0) PING (the round trip)", ping))
    print(line("(a) the Lua call alone (Limiter.take)", lua))
    print(line("(b) the middleware's call (RateLimits.take)", whole))


async def over_http(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        urls = {}
        for name, env in (
            ("with", {"RATE_LIMITS": "true", **NEVER_REFUSED}),
            ("without", {"RATE_LIMITS": "false"}),
        ):
            # api_processes passes this process's environment on to the `everloop api` it starts.
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                urls[name] = stack.enter_context(api_processes(endpoints, data_dir / name, 1))[0]
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        async with httpx.AsyncClient(base_url=urls["with"], timeout=30) as anon:
            who = await account(anon, "limits")
        headers = {"Authorization": f"Bearer {who.api_key}"}
        async with (
            httpx.AsyncClient(base_url=urls["with"], timeout=30, headers=headers) as limited,
            httpx.AsyncClient(base_url=urls["without"], timeout=30, headers=headers) as free,
        ):
            first = await limited.get("/v1/capabilities")
            assert first.status_code == 200 and "x-ratelimit-remaining" in first.headers, first.headers
            assert "x-ratelimit-remaining" not in (await free.get("/v1/capabilities")).headers
            on: list[float] = []
            off: list[float] = []
            for round_ in range(args.warmup + args.iterations):
                pair = []
                for client in (limited, free) if round_ % 2 else (free, limited):
                    started = time.perf_counter()
                    response = await client.get("/v1/capabilities")
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 200, response.text
                    pair.append((client is limited, elapsed))
                if round_ >= args.warmup:
                    on.extend(ms for is_on, ms in pair if is_on)
                    off.extend(ms for is_on, ms in pair if not is_on)
    paired = [a - b for a, b in zip(on, off, strict=True)]
    print("over HTTP, `GET /v1/capabilities` with an API key, one `everloop api` process each:")
    print(line("RATE_LIMITS=true", on))
    print(line("RATE_LIMITS=false", off))
    print(
        f"  {'added (difference of percentiles)':<44} p50 {pct(on, 50) - pct(off, 50):7.3f} ms   "
        f"p99 {pct(on, 99) - pct(off, 99):7.3f} ms"
    )
    print(line("added (paired per-round differences)", paired))


async def bench(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    await in_process(endpoints, data_dir, args)
    await over_http(endpoints, data_dir, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.rate_limit", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--iterations", type=int, default=2000, help="measured rounds (default 2000)")
    parser.add_argument(
        "--warmup", type=int, default=200, help="rounds run first and discarded (default 200)"
    )
    args = parser.parse_args(argv)
    configure_logging("WARNING", LogFormat.CONSOLE)
    return run_on_fresh_stack(lambda endpoints, data_dir: bench(endpoints, data_dir, args))


if __name__ == "__main__":
    sys.exit(main())
