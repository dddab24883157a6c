"""Webhook throughput: deliveries per second from the outbox to a local receiver.

    .venv/bin/python -m tests.bench.webhooks [--deliveries 500] [--rounds 3] [--singles 20]

One embedded stack (PostgreSQL, Redis, the Temporal dev server in memory); the API in a thread,
`build_worker`'s worker and the dispatcher in this process (as a worker process runs them), and a
receiver on 127.0.0.1 in a thread of its own that answers 200 at once. Each round stores
`--deliveries` events in one transaction, as a burst of turns would (the same trigger function,
`webhook_enqueue`), and times them from its commit until the receiver has had every one and every
row says `delivered`: each is a workflow of its own, one signed POST (the activity's pooled client)
and two transactions. Then `--singles` events one at a time, each timed from its commit until the
receiver has it. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import func, select, text

from api.app import create_app
from core import bus, temporal
from core.db import Database
from core.db.webhooks import WebhookDelivery
from core.identity import BUILTIN_ADMIN_ID
from core.logging import configure_logging
from core.settings import LogFormat, load_settings
from everloop.stack import Endpoints
from everloop.sweeper import WebhookDispatcher
from everloop.worker import build_worker
from tests.bench.stack import run_on_fresh_stack
from tests.servers import running
from tests.webhook_receiver import Receiver, receiving


class ThreadedReceiver:
    """`tests.webhook_receiver` in a thread with its own event loop (as another process would be),
    recording when each `webhook-id` first arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with receiving() as receiver:
            self.url = receiver.url
            self._receiver: Receiver = receiver
            self._ready.set()
            await self._stop.wait()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def count(self) -> int:
        now = time.perf_counter()
        for request in self._receiver.requests[len(self.arrived) :]:
            self.arrived.setdefault(request.headers["webhook-id"], now)
        return len(self._receiver.requests)


async def bench(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    configure_logging("WARNING", LogFormat.CONSOLE)
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {"EVERLOOP_DATA_DIR": str(data_dir), "TEMPORAL_TASK_QUEUE": task_queue, **endpoints.as_env()}
    settings = load_settings(
        {
            **env,
            "AUTH_MODE": "none",
            "SECRETS_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
            "LOG_LEVEL": "WARNING",
        }
    )
    db = Database(endpoints.database_url, pool_size=20)
    redis = bus.connect(endpoints.redis_url)
    client = await temporal.connect(endpoints.temporal_address, settings.temporal_namespace)
    receiver = ThreadedReceiver()
    receiver.start()
    worker = build_worker(client, settings, db, redis)
    dispatcher = WebhookDispatcher(db, client, task_queue, settings.webhook_retry_schedule_s)
    rates: list[float] = []
    try:
        with running(create_app(settings, configure_logs=False)) as server:
            async with worker, httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                made = await http.post(
                    "/v1/webhooks", json={"url": receiver.url, "allow_private": True, "events": []}
                )
                made.raise_for_status()
                dispatching = asyncio.create_task(dispatcher.run_forever())
                total = 0
                print(
                    f"{args.deliveries} deliveries per round, {args.rounds} rounds; one worker, one receiver"
                )
                for round_ in range(1, args.rounds + 1):
                    total += args.deliveries
                    async with db.session() as s:
                        await s.execute(
                            text(
                                "SELECT webhook_enqueue(:owner, 'turn.completed', "
                                "jsonb_build_object('n', n)) FROM generate_series(1, :count) AS n"
                            ),
                            {"owner": BUILTIN_ADMIN_ID, "count": args.deliveries},
                        )
                        await s.commit()
                    start = time.perf_counter()
                    first = None
                    while receiver.count() < total:
                        if first is None and receiver.count() > total - args.deliveries:
                            first = time.perf_counter() - start
                        await asyncio.sleep(0.005)
                    received = time.perf_counter() - start
                    while True:
                        async with db.session() as s:
                            delivered = await s.scalar(
                                select(func.count()).where(WebhookDelivery.status == "delivered")
                            )
                        if delivered == total:
                            break
                        await asyncio.sleep(0.01)
                    done = time.perf_counter() - start
                    rate = args.deliveries / done
                    rates.append(rate)
                    print(
                        f"  round {round_}: first at {1000 * (first or received):.0f} ms, all received in "
                        f"{received:.2f} s, all marked delivered in {done:.2f} s: {rate:.0f} deliveries/s"
                    )
                # One event at a time: from its commit to the receiver (the NOTIFY wakes the dispatcher).
                singles: list[float] = []
                for _ in range(args.singles):
                    total += 1
                    async with db.session() as s:
                        await s.execute(
                            text("SELECT webhook_enqueue(:owner, 'turn.completed', '{}'::jsonb)"),
                            {"owner": BUILTIN_ADMIN_ID},
                        )
                        await s.commit()
                    start = time.perf_counter()
                    while receiver.count() < total:
                        await asyncio.sleep(0.001)
                    singles.append((time.perf_counter() - start) * 1000)
                if singles:
                    ordered = sorted(singles)
                    p95 = ordered[int(0.95 * (len(ordered) - 1))]
                    print(
                        f"  one event at a time ({len(singles)}): commit -> received p50 "
                        f"{statistics.median(ordered):.0f} ms, p95 {p95:.0f} ms"
                    )
                dispatching.cancel()
                await asyncio.gather(dispatching, return_exceptions=True)
    finally:
        receiver.stop()
        await redis.aclose()
        await db.dispose()
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"deliveries/s (commit -> every row delivered): median {statistics.median(rates):.0f}, "
        f"best {max(rates):.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.webhooks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--deliveries", type=int, default=500, help="deliveries per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--singles", type=int, default=20, help="single events, one at a time, for latency")
    args = parser.parse_args(argv)
    return run_on_fresh_stack(lambda endpoints, data_dir: bench(endpoints, data_dir, args))


if __name__ == "__main__":
    sys.exit(main())
