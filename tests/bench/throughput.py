"""Sustained turns (issue 18): N sessions sending one-tool turns back to back, against the bare workflow.

    .venv/bin/python -m tests.bench.throughput [--sessions 200] [--seconds 60]
        [--workers 1] [--api-processes 1] [--keep-logs DIR]

One embedded stack (PostgreSQL without fsync, Redis, the Temporal dev server in memory), and the
deployed topology on top of it: `everloop api` processes (uvicorn) and `everloop worker` processes,
each a real process of its own running the command's own code (forked ready-imported,
tests/processes.py), and the simulator (`everloop simulator`, no delays) as the LLM over HTTP.
This process is only the clients:

 (a) `--sessions` sessions, each POSTing a one-tool turn and waiting for its `turn.completed` on the
     session's Redis channel (one subscription for all of them: an SSE stream per session would
     hold a Redis connection each and measure the API's streams, which is another figure), then
     the next turn at once, for `--seconds`. Each session first runs one turn that is not counted
     (the workflows exist, the worker and the pools are warm).
 (b) the same number of concurrent `execute_workflow` loops of `BareTurn` (tests/bench/bare.py: the
     same activities with the same options, as no-ops) on a worker process of its own with
     Temporal's default worker settings, as `build_worker`'s, for the same time.

Rates count the turns that ended inside the window; turn times are every measured turn's, POST to
`turn.completed` (or start to result). While each part runs, a sampler records each process's CPU
(the API, the worker, the stack's servers, these clients), the PostgreSQL connections each process
holds and what they are doing, and Temporal's task backlogs: what saturates first shows there.
Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import asyncpg
import httpx
import msgspec
import psutil
from redis.asyncio import Redis
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.worker import Worker

import everloop.worker
from core import bus, temporal
from everloop.stack import Endpoints
from everloop.stack.process import free_port, wait_until
from services.events import channel
from tests import factories, processes
from tests.bench.bare import BareTurn, Steps
from tests.bench.stack import run_on_fresh_stack

SCRIPT = {"mode": "script", "script": [{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}, "3"]}
TARGET_RATIO = 0.8  # the loop's turns/s against the bare workflow's, at the same concurrency
# A turn not over by then counts as an error ("no turn end"). Long: when the loop is saturated a
# turn waits for all the others (Little's law: 200 sessions at 1 turn/s is 200 s a turn).
TURN_TIMEOUT_S = 600.0
# Every client's first turn at once (each session's starts its workflow): the window opens after.
WARMUP_TIMEOUT_S = 600.0
START_TIMEOUT_S = 120.0  # the processes' start: forked ready-imported, but on a busy 2-core machine
SAMPLE_EVERY_S = 1.0
ENDS = ("turn.completed", "turn.failed", "turn.cancelled")
RETRIED = "retried"  # one_turn's verdict on a completed turn one of whose steps ran twice


# ------------------------------------------------------------------------------------- the figures


class Part(msgspec.Struct):
    """One measured part: (a) the loop or (b) the bare workflow."""

    name: str
    seconds: float
    turn_ms: list[float] = msgspec.field(default_factory=list)
    in_window: int = 0  # turns that ended inside the window: the rate's numerator
    errors: Counter[str] = msgspec.field(default_factory=Counter)
    retried: int = 0  # completed turns with a step that ran twice (a failed or timed-out attempt)

    @property
    def rate(self) -> float:
        return self.in_window / self.seconds


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def machine() -> str:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min)"


def report(part: Part) -> None:
    figures = part.turn_ms
    print(
        f"  {part.name:<34} {part.rate:7.1f}/s  {len(figures):6d} turns"
        f"  p50 {pct(figures, 50):7.1f}  p95 {pct(figures, 95):7.1f}  p99 {pct(figures, 99):7.1f} ms"
        f"  errors {sum(part.errors.values())}, turns with a retried step {part.retried}",
        flush=True,
    )
    for kind, count in part.errors.most_common():
        print(f"      {count:6d} x {kind}")


# ------------------------------------------------------------------------------------ the sampler


class Sampler:
    """Once a second, while a part runs: CPU per process group, PostgreSQL connections per process
    and by state, Temporal's backlog per task queue. Each figure's mean and maximum over the part."""

    def __init__(self, named: dict[int, str], pg_url: str, pg_port: int, client: Client, queues: list[str]):
        self.named, self.pg_url, self.pg_port = named, pg_url, pg_port
        self.client, self.queues = client, queues
        self.series: dict[str, list[float]] = defaultdict(list)
        self._cpu: dict[int, float] = {}

    def group(self, process: psutil.Process) -> str:
        """Our named processes (and their children) by name; the stack's servers by executable."""
        for candidate in [process, *process.parents()]:
            if candidate.pid == os.getpid() and candidate is not process:
                break  # a child of this process but of none of the named ones: a stack server
            if candidate.pid in self.named:
                return self.named[candidate.pid]
        name = process.name()
        if name.startswith("postgres"):
            return "postgres"
        if name.startswith("temporal"):
            return "temporal"
        if name.startswith("redis"):
            return "redis"
        return f"other ({name})"

    def cpu(self, interval: float) -> None:
        used: dict[str, float] = defaultdict(float)
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    total = times.user + times.system
                    group = self.group(process)
            except psutil.Error:
                continue
            before = self._cpu.get(process.pid)
            self._cpu[process.pid] = total
            if before is not None:
                used[group] += (total - before) / interval * 100
        for group, percent in used.items():
            self.series[f"CPU % {group}"].append(percent)

    def pg_connections(self) -> None:
        """The PostgreSQL connections each named process holds (its pool's size at that moment)."""
        for pid, name in self.named.items():
            try:
                held = [
                    c
                    for c in psutil.Process(pid).net_connections(kind="tcp")
                    if c.raddr and c.raddr.port == self.pg_port
                ]
            except psutil.Error:
                continue
            self.series[f"PG connections held by {name}"].append(len(held))

    async def pg_activity(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(
            "SELECT coalesce(state, '?') AS state, count(*) AS n,"
            " count(*) FILTER (WHERE wait_event_type = 'Lock') AS locked"
            " FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            " GROUP BY 1"
        )
        by_state = {row["state"]: row["n"] for row in rows}
        for state in ("active", "idle in transaction", "idle"):
            self.series[f"PG backends {state}"].append(by_state.get(state, 0))
        self.series["PG backends waiting on a lock"].append(sum(row["locked"] for row in rows))

    async def backlog(self) -> None:
        for queue in self.queues:
            for kind, label in (
                (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, "workflow"),
                (TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, "activity"),
            ):
                answer = await self.client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self.client.namespace,
                        task_queue=TaskQueue(name=queue),
                        task_queue_type=kind,
                        report_stats=True,
                    )
                )
                stats = answer.stats
                age = stats.approximate_backlog_age.ToMilliseconds()
                self.series[f"Temporal {queue} {label} backlog"].append(stats.approximate_backlog_count)
                self.series[f"Temporal {queue} {label} backlog age ms"].append(age)

    async def run(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self.pg_url.replace("+asyncpg", "", 1))
        try:
            last = time.monotonic()
            self.cpu(1.0)  # the baseline of each process's CPU time
            while not stop.is_set():
                try:
                    async with asyncio.timeout(SAMPLE_EVERY_S):
                        await stop.wait()
                except TimeoutError:
                    pass
                now = time.monotonic()
                self.cpu(now - last)
                last = now
                self.pg_connections()
                await self.pg_activity(conn)
                await self.backlog()
        finally:
            await conn.close()

    def print(self) -> None:
        print("    while it ran (sampled every second)                        mean      max")
        for name, values in sorted(self.series.items()):
            if values and max(values) > 0:
                print(f"      {name:<56} {sum(values) / len(values):8.1f} {max(values):8.1f}")


@asynccontextmanager
async def sampling(sampler: Sampler) -> AsyncIterator[Sampler]:
    stop = asyncio.Event()
    task = asyncio.create_task(sampler.run(stop))
    try:
        yield sampler
    finally:
        stop.set()
        await task


# -------------------------------------------------------------------------------- (a) the loop


class TurnEnds:
    """One Redis subscription for every session's channel. Frames are matched to the message that
    started their turn (`context.input_message_id`), not taken in order: a session's next turn
    starts while the last one's closing frames may still be on their way."""

    def __init__(self, redis: Redis) -> None:
        self.pubsub = redis.pubsub()
        self.waiting: dict[str, asyncio.Future[tuple[str, str | None]]] = {}
        self.ended: dict[str, tuple[str, str | None]] = {}  # ends that came before their POST's answer
        self.frames: dict[str, list[str]] = defaultdict(list)  # each turn's frames, by message id
        self._subscribed = 0
        self._all_subscribed = asyncio.Event()
        self._expected = 0
        self._reader: asyncio.Task[None] | None = None

    async def subscribe(self, channels: list[str]) -> None:
        self._expected = len(channels)
        await self.pubsub.subscribe(*channels)
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(30):
            await self._all_subscribed.wait()  # from here on, no frame is missed

    def end_of(self, message_id: str) -> asyncio.Future[tuple[str, str | None]]:
        """The turn's end: (its type, its error_code)."""
        future: asyncio.Future[tuple[str, str | None]] = asyncio.get_running_loop().create_future()
        if message_id in self.ended:
            future.set_result(self.ended.pop(message_id))
        else:
            self.waiting[message_id] = future
        return future

    def forget(self, message_id: str) -> list[str]:
        self.waiting.pop(message_id, None)
        self.ended.pop(message_id, None)
        return self.frames.pop(message_id, [])

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] == "subscribe":
                self._subscribed += 1
                if self._subscribed == self._expected:
                    self._all_subscribed.set()
                continue
            if message["type"] != "message":
                continue
            if b'"type":"output.' in message["data"]:
                continue  # token deltas: many, and not what is counted (not worth decoding)
            frame = msgspec.json.decode(message["data"])
            message_id = (frame.get("context") or {}).get("input_message_id")
            kind = frame["type"]
            if message_id is None:
                continue
            self.frames[message_id].append(kind)
            if kind in ENDS:
                end = (kind, (frame.get("data") or {}).get("error_code"))
                future = self.waiting.pop(message_id, None)
                if future is None:
                    self.ended[message_id] = end
                elif not future.done():
                    future.set_result(end)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]


async def one_turn(
    http: httpx.AsyncClient, ends: TurnEnds, path: str, timeout: float = TURN_TIMEOUT_S
) -> tuple[float, str | None]:
    """POST one message and wait for its turn's end: (milliseconds, None) or (ms, the error's kind)."""
    start = time.perf_counter()
    try:
        response = await http.post(f"{path}/messages", json=factories.text_message("1+2?"))
    except httpx.HTTPError as exc:
        return 0.0, f"POST failed: {type(exc).__name__}"
    if response.status_code != 201:
        return 0.0, f"POST {response.status_code}: {response.text[:80]}"
    message_id = response.json()["id"]
    try:
        async with asyncio.timeout(timeout):
            kind, code = await ends.end_of(message_id)
    except TimeoutError:
        ends.forget(message_id)
        return 0.0, f"no turn end within {timeout:g} s"
    elapsed = (time.perf_counter() - start) * 1000
    frames = ends.forget(message_id)
    if kind != "turn.completed":
        return elapsed, f"{kind} ({code})"
    # A one-tool turn reasons twice (the tool call, then the answer) and completes one act.
    if frames.count("reason.completed") != 2:
        return elapsed, f"not a one-tool turn: {', '.join(frames)}"
    # Not an error (the turn completed, once), but worth counting: a step's attempt failed or
    # timed out and Temporal ran it again.
    return elapsed, RETRIED if frames.count("reason.started") > 2 else None


async def loop_part(
    https: list[httpx.AsyncClient],
    redis: Redis,
    agent_id: str,
    sessions: int,
    seconds: float,
    sampler: Sampler,
) -> Part:
    """(a): the sessions spread over the API processes, as a load balancer would."""
    paths: list[tuple[httpx.AsyncClient, str, str]] = []
    for index in range(sessions):
        http = https[index % len(https)]
        created = await factories.session(http, agent_id)
        path = f"/v1/agents/{agent_id}/sessions/{created['id']}"
        paths.append((http, path, channel(uuid.UUID(created["id"]))))
    ends = TurnEnds(redis)
    try:
        await ends.subscribe([name for _, _, name in paths])
        part = Part(name=f"(a) loop, {sessions} sessions", seconds=seconds)
        await measure(part, sessions, sampler, lambda i: one_turn(paths[i][0], ends, paths[i][1]))
        return part
    finally:
        await ends.aclose()


class Window:
    """The measured window. It opens once every client has finished a turn (each session's
    workflow exists, the pipeline is full: a steady state, not the first burst) and lasts the
    part's seconds; what ends inside it is counted, whenever it started."""

    def __init__(self, part: Part, clients: int) -> None:
        self.part, self.waiting = part, clients
        self.start = self.end = math.inf
        self.opened, self.closed = asyncio.Event(), asyncio.Event()
        self.in_flight = 0
        self.ramp_errors: Counter[str] = Counter()  # before the window: the first burst's

    def open(self) -> None:
        if not self.opened.is_set():
            self.start = time.monotonic()
            self.end = self.start + self.part.seconds
            self.opened.set()
            asyncio.get_running_loop().call_later(self.part.seconds, self.closed.set)

    def ended(self, first: bool, ms: float, error: str | None) -> None:
        if first:
            self.waiting -= 1
            if self.waiting == 0:
                self.open()
        if time.monotonic() < self.start and error not in (None, RETRIED):
            self.ramp_errors[error] += 1
        if not self.start <= time.monotonic() <= self.end:
            return
        if error is not None and error != RETRIED:
            self.part.errors[error] += 1
            return
        self.part.retried += error == RETRIED
        self.part.turn_ms.append(ms)
        self.part.in_window += 1


async def measure(
    part: Part,
    clients: int,
    sampler: Sampler,
    turn: Callable[[int], Awaitable[tuple[float, str | None]]],
) -> None:
    """Every client turn after turn until the window closes; `turn(i)`: client i's next turn."""
    window = Window(part, clients)
    started = time.monotonic()

    async def client(index: int) -> None:
        first = True
        while not window.closed.is_set():
            window.in_flight += 1
            try:
                ms, error = await turn(index)
            finally:
                window.in_flight -= 1
            window.ended(first, ms, error)
            first = False

    tasks = [asyncio.create_task(client(index)) for index in range(clients)]
    try:
        try:
            async with asyncio.timeout(WARMUP_TIMEOUT_S):
                await window.opened.wait()
        except TimeoutError:
            print(f"  {window.waiting} clients had not finished a turn in {WARMUP_TIMEOUT_S:g} s", flush=True)
            window.open()
        print(
            f"  ramp-up: every client's first turn done in {window.start - started:.1f} s; measuring",
            flush=True,
        )
        if window.ramp_errors:
            print(f"  errors before the window (not counted): {dict(window.ramp_errors)}", flush=True)
        async with sampling(sampler):
            await window.closed.wait()
        print(f"  at the window's end {window.in_flight} turns were in flight (not counted)", flush=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ----------------------------------------------------------------------- (b) the bare workflow


def serve_bare(address: str, queue: str, options: dict[str, Any], log_path: str) -> None:
    """The bare workflow's worker, in a process of its own as the loop's is (forked from the same
    ready-imported fork server), with the same slot settings."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as tests/processes.py's children: ends at once

    async def serve() -> None:
        client = await temporal.connect(address, "default")
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[BareTurn],
            workflow_runner=temporal.workflow_runner(),
            activities=[Steps().step],
            **options,
        )
        await worker.run()

    asyncio.run(serve())


@contextmanager
def bare_worker(
    endpoints: Endpoints, queue: str, options: dict[str, int], log_path: Path
) -> Iterator[processes.CliProcess]:
    child = processes._context.Process(
        target=serve_bare, args=(endpoints.temporal_address, queue, options, str(log_path)), daemon=True
    )
    child.start()
    process = processes.CliProcess(child)
    try:
        yield process
    finally:
        stop(process)


async def bare_part(client: Client, queue: str, sessions: int, seconds: float, sampler: Sampler) -> Part:
    async def one() -> tuple[float, str | None]:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(TURN_TIMEOUT_S):
                await client.execute_workflow(BareTurn.run, id=f"bare-{uuid.uuid4()}", task_queue=queue)
        except TimeoutError:
            return 0.0, f"no result within {TURN_TIMEOUT_S:g} s"
        except Exception as exc:
            return 0.0, f"{type(exc).__name__}: {str(exc)[:80]}"
        return (time.perf_counter() - start) * 1000, None

    part = Part(name=f"(b) bare workflow, {sessions} at once", seconds=seconds)
    await measure(part, sessions, sampler, lambda _: one())
    return part


# ------------------------------------------------------------------------------------ the stack


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def log_problems(log_dir: Path) -> None:
    """The processes' logs: errors and warnings by their first words (pool timeouts show here)."""
    for path in sorted(log_dir.glob("*.log")):
        lines = [
            line
            for line in path.read_text(errors="replace").splitlines()
            if any(word in line.lower() for word in ("error", "warning", "timeout", "traceback"))
        ]
        if lines:
            kinds = Counter(line[:140] for line in lines)
            print(f"    {path.name}: {len(lines)} error/warning lines; most common:")
            for line, count in kinds.most_common(5):
                print(f"      {count:5d} x {line}")


async def bench(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    log_dir = data_dir / "logs" / "throughput"
    log_dir.mkdir(parents=True, exist_ok=True)
    queue = f"bench-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        **endpoints.as_env(),
        "EVERLOOP_DATA_DIR": str(data_dir),
        "AUTH_MODE": "none",
        "TEMPORAL_TASK_QUEUE": queue,
        "LOG_LEVEL": "WARNING",
    }
    pg_port = int(endpoints.database_url.rsplit(":", 1)[1].split("/", 1)[0])
    print(f"machine: {machine()}; the machine is shared, so these figures are noisy", flush=True)
    named: dict[int, str] = {os.getpid(): "bench clients (this process)"}
    async with AsyncExitStack() as stack:
        sim_port = free_port()
        simulator = processes.start(["simulator", "--port", str(sim_port)], env, log_dir / "simulator.log")
        stack.callback(stop, simulator)
        named[simulator.pid] = "simulator"
        simulator_url = f"http://127.0.0.1:{sim_port}/simulator/v1"
        # The slots build_worker sets, and any the command line adds: the bare worker gets the same.
        sizing = {**everloop.worker.SLOTS, **dict(args.worker_option)}
        print(f"worker slots: {sizing or 'temporalio defaults'}", flush=True)
        workers = [
            start_worker(dict(args.worker_option), env, log_dir / f"worker-{index}.log")
            for index in range(args.workers)
        ]
        for index, worker in enumerate(workers):
            stack.callback(stop, worker)
            named[worker.pid] = f"worker {index}"
        urls = stack.enter_context(processes.api_processes(env, log_dir, count=args.api_processes))
        named |= {pid: f"api {i}" for i, pid in enumerate(api_pids(urls))}
        wait_until("the simulator", lambda: healthy(f"{simulator_url}/models"), timeout=START_TIMEOUT_S)
        print(
            f"topology: {args.api_processes} `everloop api` process(es), {args.workers} `everloop worker`"
            f" process(es), the simulator in its own process; clients in this process; pids {named}",
            flush=True,
        )
        client = await temporal.connect(endpoints.temporal_address, "default")
        limits = httpx.Limits(
            max_connections=args.sessions + 10, max_keepalive_connections=args.sessions + 10
        )
        # Sessions spread over the API processes, as a load balancer would.
        https = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60, limits=limits))
            for url in urls
        ]
        redis = bus.connect(endpoints.redis_url)
        stack.push_async_callback(redis.aclose)
        provider = await factories.provider(https[0], base_url=simulator_url)
        model = await factories.model(https[0], provider["id"], settings=SCRIPT)
        agent = await factories.agent(https[0], default_model_id=model["id"], capabilities=["test_math"])

        sampler = Sampler(named, endpoints.database_url, pg_port, client, [queue])
        print(f"\n(a) {args.sessions} sessions, one-tool turns back to back, {args.seconds:g} s", flush=True)
        loop = await loop_part(https, redis, agent["id"], args.sessions, args.seconds, sampler)
        report(loop)
        sampler.print()
        # The turns still in flight would go on using the machine under (b): their workers stop.
        for worker in workers:
            stop(worker)

        bare_queue = f"{queue}-bare"
        bare_log = log_dir / "bare-worker.log"
        with bare_worker(endpoints, bare_queue, sizing, bare_log) as process:
            named[process.pid] = "bare worker"
            sampler = Sampler(named, endpoints.database_url, pg_port, client, [bare_queue])
            print(f"\n(b) the bare workflow, {args.sessions} at once, {args.seconds:g} s", flush=True)
            bare = await bare_part(client, bare_queue, args.sessions, args.seconds, sampler)
            report(bare)
            sampler.print()

        print(f"\nmachine after: {machine()}")
        print(f"  (a) loop      {loop.rate:7.1f} turns/s")
        print(f"  (b) bare      {bare.rate:7.1f} turns/s")
        ratio = loop.rate / bare.rate if bare.rate else math.nan
        print(f"  (a) / (b) = {ratio:.2f}   (target >= {TARGET_RATIO})")
        print("\nthe processes' logs:")
        log_problems(log_dir)
        if args.keep_logs:
            print(f"\nlogs kept in {args.keep_logs}")
            subprocess.run(["cp", "-r", str(log_dir), args.keep_logs], check=False)


def api_pids(urls: list[str]) -> list[int]:
    """The pids of the processes listening on these URLs' ports (our own children)."""
    ports = {int(url.rsplit(":", 1)[1]) for url in urls}
    found: dict[int, int] = {}
    for process in psutil.Process().children(recursive=True):
        try:
            for conn in process.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports:
                    found[conn.laddr.port] = process.pid
        except psutil.Error:
            continue
    return [found[int(url.rsplit(":", 1)[1])] for url in urls if int(url.rsplit(":", 1)[1]) in found]


def run_worker_with(options: dict[str, Any], env: dict[str, str], log_path: str) -> None:
    """In the forked child: `everloop worker` with other `Worker` options (slots, pollers), to
    measure a sizing before `build_worker` has it. Otherwise exactly the command's own code."""
    with ExitStack() as stack:
        extra = {}
        for name, value in options.items():
            constant = name.upper()  # the options build_worker sets from a constant of its own
            if hasattr(everloop.worker, constant):
                stack.enter_context(mock.patch.object(everloop.worker, constant, value))
            else:
                extra[name] = value
        stack.enter_context(mock.patch.object(everloop.worker, "Worker", functools.partial(Worker, **extra)))
        processes._run(["worker"], env, log_path)


def start_worker(options: dict[str, int], env: dict[str, str], log_path: Path) -> processes.CliProcess:
    if not options:
        return processes.start(["worker"], env, log_path)
    # The fork server of tests/processes.py, with this module's function as the child's code.
    child = processes._context.Process(
        target=run_worker_with, args=(options, dict(env), str(log_path)), daemon=True
    )
    child.start()
    return processes.CliProcess(child)


def worker_option(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    return name.strip(), int(value)


def stop(process: processes.CliProcess) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.throughput", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sessions", type=int, default=200, help="concurrent sessions (default 200)")
    parser.add_argument("--seconds", type=float, default=60.0, help="each part's duration (default 60)")
    parser.add_argument("--workers", type=int, default=1, help="`everloop worker` processes (default 1)")
    parser.add_argument("--api-processes", type=int, default=1, help="`everloop api` processes (default 1)")
    parser.add_argument(
        "--worker-option",
        type=worker_option,
        action="append",
        default=[],
        metavar="NAME=N",
        help="a temporalio Worker option for the loop's workers: max_concurrent_activities=20 (repeatable)",
    )
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the processes' logs to DIR at the end")
    args = parser.parse_args(argv)
    return run_on_fresh_stack(lambda endpoints, data_dir: bench(endpoints, data_dir, args))


if __name__ == "__main__":
    sys.exit(main())
