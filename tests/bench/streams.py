"""SSE streams: what thousands of open streams cost one API process, and how soon one event reaches
a thousand readers of one session (issue 18).

    .venv/bin/python -m tests.bench.streams [--streams 5000] [--subscribers 1000] [--rounds 20]
        [--sessions N] [--live 0.2] [--hold 20] [--concurrency 32]

One embedded stack (PostgreSQL without fsync, Redis, the Temporal dev server in memory), migrated;
the API as an `everloop api` process of its own (`python -m everloop.cli api` from this checkout:
uvicorn, as deployed) with AUTH_MODE=none and no rate limits, so the process's RSS is the API's
alone. No worker: the events are published from here on the session's Redis channel
with the project's own `services.events.publish_ephemeral` (the path of a model's token deltas).

1. **Memory.** Baseline RSS (VmRSS of /proc/<pid>/status) after a warm-up request and one stream
   opened and closed; then `--streams` SSE streams (`GET /v1/sessions/{id}/sse`) spread over
   `--sessions` sessions (default one per ten streams), `--concurrency` being opened at a time. A
   `--live` share of the sessions gets a token delta every second while the streams open and for
   `--hold` seconds after (long enough for one keep-alive, 15 s, on every stream); the others stay
   idle. RSS when all are open and after the hold, its rise over the baseline in total and per
   stream, the time to open them all; every stream must get its `connected` frame, and every live
   one a final check event published to each live session; failures are counted by their cause.
2. **Fan-out.** `--subscribers` streams on one session; `--rounds` times (after one discarded), one
   delta published carrying the round's mark: per subscriber, from just before the publish call to
   the frame's arrival at this process (the socket's data callback, before any parsing), p50 / p99
   / max, and how many arrived.

The client is one asyncio process with a bare `asyncio.Protocol` per stream (no task, no HTTP
library): it shares the machine's cores with the API and Redis, and its own handling of the frames
that arrived before a given one is inside that one's time, so the fan-out figures are an upper
bound of the server's. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgspec
import redis.asyncio as redis
from sqlalchemy import text

from core import bus
from core.db import Database
from core.logging import configure_logging
from core.schemas.events import OutputMessageDelta
from core.settings import LogFormat
from everloop.stack import Endpoints
from everloop.stack.process import ManagedProcess, free_port, wait_until
from services.event_stream import POLLING
from services.events import publish_ephemeral
from tests import factories
from tests.bench.stack import run_on_fresh_stack

TARGET_MEMORY_MB = 150.0
TARGET_FANOUT_P99_MS = 50.0
CONNECT_TIMEOUT_S = 60.0  # a stream's `connected` frame, from the start of its connection
ROUND_TIMEOUT_S = 10.0  # every subscriber's copy of one event
LIVE_INTERVAL_S = 1.0
PROGRESS_S = 15.0  # how often the opening of many streams reports how far it got
SETTLE_S = 1.0  # before reading RSS: the last requests' work is done
ROOT = Path(__file__).resolve().parents[2]


class _Delta(msgspec.Struct):
    message_id: str


class _Live(msgspec.Struct):
    data: _Delta


class Arrivals:
    """How many streams each mark has reached, and a future per mark that completes once `count` have."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._waiting: dict[str, tuple[int, asyncio.Future[None]]] = {}

    def expect(self, mark: str, count: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[mark] = (count, future)
        self._check(mark)
        return future

    def arrived(self, mark: str) -> None:
        self.counts[mark] += 1
        self._check(mark)

    def _check(self, mark: str) -> None:
        waiting = self._waiting.get(mark)
        if waiting is not None and self.counts[mark] >= waiting[0] and not waiting[1].done():
            waiting[1].set_result(None)


class SseStream(asyncio.Protocol):
    """One `GET .../sse` over a raw connection: headers, chunked body, SSE frames. It records when
    each delta's mark arrived (the time `data_received` was called) and the comments it got."""

    def __init__(self, session_id: str, request: bytes, arrivals: Arrivals) -> None:
        self.session_id = session_id
        self.request = request
        self.arrivals = arrivals
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Retrieved here too: a failure after the opener stopped waiting is not an unhandled error.
        self.connected.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.opened = False  # its `connected` frame arrived
        self.dropped = False  # the server ended the stream after its `connected` frame
        self._closing = False
        self.marks: dict[str, float] = {}
        self.comments: Counter[str] = Counter()
        self.busy_s = 0.0  # time spent in `data_received`: the client's own share of the figures
        self.transport: asyncio.Transport | None = None
        self._raw = b""
        self._headers_done = False
        self._chunked = False
        self._body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.dropped = self.opened and not self._closing
        self._fail(f"connection closed: {exc!r}" if exc else "connection closed by the server")

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, why: str) -> None:
        if not self.connected.done():
            self.connected.set_exception(RuntimeError(why))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._raw += data
        if not self._headers_done:
            head, sep, rest = self._raw.partition(b"\r\n\r\n")
            if not sep:
                return
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            if " 200 " not in status + " ":
                self._fail(f"{status}: {rest[:160].decode(errors='replace')}")
                self.close()
                return
            self._headers_done = True
            self._chunked = b"transfer-encoding: chunked" in head.lower()
            self._raw = rest
        if self._chunked:
            self._dechunk()
        else:
            self._body += self._raw
            self._raw = b""
        self._frames(now)
        self.busy_s += time.perf_counter() - now

    def _dechunk(self) -> None:
        while True:
            size_line, sep, rest = self._raw.partition(b"\r\n")
            if not sep:
                return
            size = int(size_line.split(b";", 1)[0], 16)
            if len(rest) < size + 2:
                return
            self._body += rest[:size]
            self._raw = rest[size + 2 :]
            if size == 0:
                return

    def _frames(self, now: float) -> None:
        body = self._body.replace(b"\r\n", b"\n")
        *frames, self._body = body.split(b"\n\n")
        for frame in frames:
            event = data = b""
            for line in frame.split(b"\n"):
                if line.startswith(b"event: "):
                    event = line[7:]
                elif line.startswith(b"data: "):
                    data = line[6:]
                elif line.startswith(b": "):
                    self.comments[line[2:].decode(errors="replace")] += 1
            if event == b"connected":
                self.opened = True
                if not self.connected.done():
                    self.connected.set_result(None)
            elif event == b"output.message.delta":
                mark = msgspec.json.decode(data, type=_Live).data.message_id
                self.marks[mark] = now
                self.arrivals.arrived(mark)


class Opened(msgspec.Struct):
    streams: list[SseStream]
    failures: Counter[str]
    seconds: float


async def open_streams(port: int, sessions: list[str], arrivals: Arrivals, concurrency: int) -> Opened:
    """One stream per entry of `sessions`, `concurrency` connecting at a time; each counts as open
    once its `connected` frame has arrived."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    failures: Counter[str] = Counter()
    opened: list[SseStream] = []

    async def one(session_id: str) -> None:
        request = (
            f"GET /v1/sessions/{session_id}/sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        stream = SseStream(session_id, request, arrivals)
        async with gate:
            try:
                await loop.create_connection(lambda: stream, "127.0.0.1", port)
                await asyncio.wait_for(asyncio.shield(stream.connected), CONNECT_TIMEOUT_S)
            except (OSError, RuntimeError, TimeoutError) as exc:
                failures[f"{type(exc).__name__}: {str(exc)[:200]}"] += 1
                stream.close()
                return
        opened.append(stream)

    async def progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            print(
                f"   ... {len(opened)} open, {failures.total()} failed after "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )

    start = time.perf_counter()
    reporting = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(one(s) for s in sessions))
    finally:
        reporting.cancel()
    return Opened(streams=opened, failures=failures, seconds=time.perf_counter() - start)


def close_all(streams: list[SseStream]) -> None:
    for stream in streams:
        stream.close()


def rss_mb(pid: int) -> float:
    """The process's resident set (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_s(pid: int) -> float:
    """The process's CPU time so far, user and system, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def commits(db: Database) -> int:
    """Transactions PostgreSQL has committed in this database so far. Its statistics lag (a busy
    backend reports each second, an idle one within 10 s): a rough figure over a short hold."""
    async with db.session() as s:
        value = await s.scalar(
            text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        )
    return int(value or 0)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def publish(client: redis.Redis, session_id: str, mark: str) -> None:
    await publish_ephemeral(client, uuid.UUID(session_id), OutputMessageDelta(message_id=mark, delta="x"))


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def api_process(endpoints: Endpoints, data_dir: Path) -> Iterator[tuple[int, int]]:
    """`everloop api` as a process of its own, started as `python -m everloop.cli api` from this
    checkout (so its RSS is the API's alone: a fork of tests/processes.py's server would also hold
    the worker's imports, litellm among them); its pid and port once it answers /health."""
    port = free_port()
    env = {
        **os.environ,
        **endpoints.as_env(),
        "EVERLOOP_DATA_DIR": str(data_dir),
        "EVERLOOP_HOST": "127.0.0.1",
        "EVERLOOP_PORT": str(port),
        "AUTH_MODE": "none",  # no credential to check per stream, no rate limits
        "RATE_LIMITS": "false",
        "LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "everloop.cli", "api"]
    process = ManagedProcess("api", argv, log_path=data_dir / "logs" / "api.log", env=env, cwd=ROOT)
    try:
        process.start()
        url = f"http://127.0.0.1:{port}"
        wait_until("everloop api", functools.partial(_healthy, url), timeout=180, process=process)
        assert process.pid is not None
        yield process.pid, port
    finally:
        process.stop(timeout=30)
        summarise_log(data_dir / "logs" / "api.log")


def summarise_log(path: Path) -> None:
    """The API's log lines by their message (and error, numbers blanked), most frequent first: the
    log goes with the stack's directory."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return
    kinds: Counter[str] = Counter()
    for line in lines:
        try:
            entry = msgspec.json.decode(line, type=dict[str, object])
            kind = f"{entry.get('level', '')}: {entry.get('event', '')}: {entry.get('error', '')}"
        except msgspec.DecodeError:
            kind = line
        kinds[re.sub(r"\d+(\.\d+)?", "#", kind)[:200]] += 1
    print(f"the API's log: {len(lines)} lines" + (", by message:" if kinds else ""))
    for kind, count in kinds.most_common(6):
        print(f"  {count:6d} x {kind}")


async def make_sessions(http: httpx.AsyncClient, agent_id: str, count: int) -> list[str]:
    gate = asyncio.Semaphore(16)

    async def one() -> str:
        async with gate:
            return str((await factories.session(http, agent_id))["id"])

    return list(await asyncio.gather(*(one() for _ in range(count))))


def failures_text(failures: Counter[str]) -> str:
    if not failures:
        return "none"
    return "; ".join(f"{n} x {why}" for why, n in failures.most_common(6))


class Memory(msgspec.Struct):
    baseline_mb: float
    open_mb: float
    held_mb: float
    closed_mb: float
    opened: int
    seconds: float
    failures: Counter[str]
    redis_clients: int
    polling: int  # streams told "redis unavailable: polling the database"
    keepalives: int  # streams that had at least one keep-alive comment
    live_streams: int
    live_checked: int  # live streams that got the final check event
    live_ticks: int  # live streams that got at least one of the deltas sent while they opened and held
    dropped: int  # streams the server ended while they were held
    hold_cpu: float  # the API's CPU time while holding them, in cores
    hold_tps: float  # PostgreSQL transactions a second while holding them (the whole server)


async def memory(
    pid: int,
    port: int,
    http: httpx.AsyncClient,
    sessions: list[str],
    bus_client: redis.Redis,
    db: Database,
    args: argparse.Namespace,
) -> Memory:
    arrivals = Arrivals()
    # Baseline: a request, then one stream opened and closed, so one-off costs (imports on first
    # use, the pools' first connections) are in it.
    (await http.get(f"/v1/sessions/{sessions[0]}/events")).raise_for_status()
    first = await open_streams(port, sessions[:1], arrivals, 1)
    if first.failures:
        raise RuntimeError(f"the warm-up stream failed: {failures_text(first.failures)}")
    close_all(first.streams)
    await asyncio.sleep(SETTLE_S)
    baseline = rss_mb(pid)

    live = set(sessions[: max(1, round(len(sessions) * args.live))] if args.live > 0 else [])
    ticks = 0

    async def publishing() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            # One after another: one Redis connection of this process, so Redis's client count
            # below is the API's (and this one's).
            for session_id in live:
                await publish(bus_client, session_id, f"tick-{ticks}")
            await asyncio.sleep(LIVE_INTERVAL_S)

    print(
        f"\n1. memory: {args.streams} streams over {len(sessions)} sessions, {len(live)} of them live "
        f"(a delta every {LIVE_INTERVAL_S:.0f} s), {args.concurrency} opening at a time; {load()}",
        flush=True,
    )
    publisher = asyncio.create_task(publishing())
    targets = [sessions[i % len(sessions)] for i in range(args.streams)]
    opened = await open_streams(port, targets, arrivals, args.concurrency)
    streams = opened.streams
    try:
        print(
            f"   {len(streams)} open in {opened.seconds:.1f} s; failures: {failures_text(opened.failures)}",
            flush=True,
        )
        await asyncio.sleep(SETTLE_S)
        open_mb = rss_mb(pid)
        redis_clients = int((await bus_client.info("clients"))["connected_clients"])
        print(f"   RSS {open_mb:.1f} MB; holding them {args.hold:.0f} s...", flush=True)
        hold_start, cpu_before, commits_before = time.perf_counter(), cpu_s(pid), await commits(db)
        await asyncio.sleep(args.hold)
        held_s = time.perf_counter() - hold_start
        hold_cpu = (cpu_s(pid) - cpu_before) / held_s
        hold_tps = (await commits(db) - commits_before) / held_s
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
        held_mb = rss_mb(pid)
        live_streams = [s for s in streams if s.session_id in live]
        check = arrivals.expect("check", len(live_streams))
        for session_id in live:
            await publish(bus_client, session_id, "check")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(check, ROUND_TIMEOUT_S)
        polling = sum(1 for s in streams if s.comments[POLLING])
        keepalives = sum(1 for s in streams if s.comments["keep-alive"])
        live_checked = sum(1 for s in live_streams if "check" in s.marks)
        live_ticks = sum(1 for s in live_streams if any(m.startswith("tick-") for m in s.marks))
        dropped = sum(1 for s in streams if s.dropped)
    finally:
        publisher.cancel()
        close_all(streams)
    await asyncio.sleep(SETTLE_S * 3)
    return Memory(
        baseline_mb=baseline,
        open_mb=open_mb,
        held_mb=held_mb,
        closed_mb=rss_mb(pid),
        opened=len(streams),
        seconds=opened.seconds,
        failures=opened.failures,
        redis_clients=redis_clients,
        polling=polling,
        keepalives=keepalives,
        live_streams=len(live_streams),
        live_checked=live_checked,
        live_ticks=live_ticks,
        dropped=dropped,
        hold_cpu=hold_cpu,
        hold_tps=hold_tps,
    )


class Fanout(msgspec.Struct):
    subscribers: int
    opened: int
    failures: Counter[str]
    open_seconds: float
    latencies_ms: list[float]  # every arrival of every measured round
    last_ms: list[float]  # per round: when the last subscriber had it
    expected: int
    polling: int
    dropped: int
    client_busy_ms: float  # per round, the client's own time in `data_received` (all streams)


async def fanout(port: int, session_id: str, bus_client: redis.Redis, args: argparse.Namespace) -> Fanout:
    arrivals = Arrivals()
    print(
        f"\n2. fan-out: {args.subscribers} subscribers of one session, {args.rounds} rounds; {load()}",
        flush=True,
    )
    opened = await open_streams(port, [session_id] * args.subscribers, arrivals, args.concurrency)
    streams = opened.streams
    print(
        f"   {len(streams)} open in {opened.seconds:.1f} s; failures: {failures_text(opened.failures)}",
        flush=True,
    )
    latencies: list[float] = []
    last: list[float] = []
    try:
        await asyncio.sleep(SETTLE_S)
        busy_before = 0.0
        for round_ in range(args.rounds + 1):  # the first is discarded
            mark = f"round-{round_}"
            done = arrivals.expect(mark, len(streams))
            busy_before = sum(s.busy_s for s in streams) if round_ == 1 else busy_before
            start = time.perf_counter()
            await publish(bus_client, session_id, mark)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done, ROUND_TIMEOUT_S)
            got = [(s.marks[mark] - start) * 1000 for s in streams if mark in s.marks]
            if round_ > 0:
                latencies += got
                last.append(max(got, default=ROUND_TIMEOUT_S * 1000))
            await asyncio.sleep(0.2)
        busy_ms = (sum(s.busy_s for s in streams) - busy_before) * 1000 / max(args.rounds, 1)
        polling = sum(1 for s in streams if s.comments[POLLING])
        dropped = sum(1 for s in streams if s.dropped)
    finally:
        close_all(streams)
    await asyncio.sleep(SETTLE_S)
    return Fanout(
        subscribers=args.subscribers,
        opened=len(streams),
        failures=opened.failures,
        open_seconds=opened.seconds,
        latencies_ms=latencies,
        last_ms=last,
        expected=len(streams) * args.rounds,
        polling=polling,
        dropped=dropped,
        client_busy_ms=busy_ms,
    )


def report_memory(m: Memory, args: argparse.Namespace, sessions: int) -> None:
    rise = m.open_mb - m.baseline_mb
    rise_held = m.held_mb - m.baseline_mb
    per_stream_kb = 1024 * max(rise, rise_held) / max(m.opened, 1)
    print(
        f"1. {args.streams} SSE streams on one API process, over {sessions} sessions "
        f"({m.live_streams} of the streams on the live ones)"
    )
    print(
        f"   opened with `connected`: {m.opened}/{args.streams} in {m.seconds:.1f} s "
        f"({m.opened / max(m.seconds, 1e-9):.0f}/s, {args.concurrency} at a time)"
    )
    print(f"   failures: {failures_text(m.failures)}")
    print(
        f"   streams told '{POLLING}': {m.polling}; with a keep-alive: {m.keepalives}; "
        f"ended by the server while held: {m.dropped}"
    )
    print(
        f"   live streams with the check event: {m.live_checked}/{m.live_streams}; "
        f"with at least one earlier delta: {m.live_ticks}/{m.live_streams}"
    )
    print(f"   Redis connected clients with all open: {m.redis_clients} (this bench's one or two included)")
    print(
        f"   while held: the API used {m.hold_cpu:.2f} cores; PostgreSQL committed "
        f"{m.hold_tps:.0f} transactions/s"
    )
    print(
        f"   API RSS MB: baseline {m.baseline_mb:.1f}; all open {m.open_mb:.1f} ({rise:+.1f}); after "
        f"{args.hold:.0f} s {m.held_mb:.1f} ({rise_held:+.1f}); all closed {m.closed_mb:.1f}"
    )
    print(
        f"   rise over the baseline: {max(rise, rise_held):.1f} MB, {per_stream_kb:.1f} KB a stream "
        f"(target <= {TARGET_MEMORY_MB:.0f} MB for 5000)"
    )


def report_fanout(f: Fanout, args: argparse.Namespace) -> None:
    arrived = len(f.latencies_ms)
    print(f"2. one delta to {f.subscribers} subscribers of one session, {args.rounds} rounds")
    print(
        f"   opened: {f.opened}/{f.subscribers} in {f.open_seconds:.1f} s; failures: "
        f"{failures_text(f.failures)}; told '{POLLING}': {f.polling}; ended by the server: {f.dropped}"
    )
    print(f"   arrived: {arrived}/{f.expected} (within {ROUND_TIMEOUT_S:.0f} s of each publish)")
    if f.latencies_ms:
        lat = f.latencies_ms
        print(
            f"   publish -> frame, ms: p50 {pct(lat, 50):.1f}  p99 {pct(lat, 99):.1f}  max {max(lat):.1f}  "
            f"(target p99 <= {TARGET_FANOUT_P99_MS:.0f} ms)"
        )
        print(
            f"   per round, the last subscriber's, ms: p50 {pct(f.last_ms, 50):.1f}  max {max(f.last_ms):.1f}"
        )
        print("   each round's last, ms: " + " ".join(f"{ms:.0f}" for ms in f.last_ms))
    print(
        f"   the client's own time handling one round's frames: {f.client_busy_ms:.1f} ms "
        "(inside the figures above: frames queue behind it)"
    )


async def bench(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    machine = load()
    count = args.sessions or max(1, args.streams // 10)
    print(f"starting the API from {ROOT} ({machine})...", flush=True)
    bus_client = bus.connect(endpoints.redis_url)
    db = Database(endpoints.database_url, pool_size=1)
    try:
        with api_process(endpoints, data_dir) as (pid, port):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                agent = await factories.agent(http)
                sessions = await make_sessions(http, str(agent["id"]), count + 1)
                # --streams 0 or --subscribers 0 leaves that part out.
                m = (
                    await memory(pid, port, http, sessions[:count], bus_client, db, args)
                    if args.streams
                    else None
                )
                f = await fanout(port, sessions[count], bus_client, args) if args.subscribers else None
            print(f"\nmachine: {machine} at the start; {load()} at the end (other work moves every figure)")
            if m is not None:
                report_memory(m, args, count)
            if f is not None:
                report_fanout(f, args)
    finally:
        await bus_client.aclose()
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.streams", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--streams", type=int, default=5000, help="streams held open at once (default 5000; 0: none)"
    )
    parser.add_argument(
        "--sessions", type=int, default=0, help="sessions they spread over (default streams/10)"
    )
    parser.add_argument(
        "--live", type=float, default=0.2, help="share of the sessions with events (default 0.2)"
    )
    parser.add_argument("--hold", type=float, default=20.0, help="seconds to hold them open (default 20)")
    parser.add_argument("--subscribers", type=int, default=1000, help="streams on the fan-out session")
    parser.add_argument("--rounds", type=int, default=20, help="fan-out rounds measured (default 20)")
    parser.add_argument("--concurrency", type=int, default=32, help="streams being opened at once")
    args = parser.parse_args(argv)
    configure_logging("WARNING", LogFormat.CONSOLE)
    return run_on_fresh_stack(lambda endpoints, data_dir: bench(endpoints, data_dir, args))


if __name__ == "__main__":
    sys.exit(main())
