"""Processes (issue 18): 2 API and 2 worker processes on one stack under load, one worker killed
mid-run, against 1 API and 1 worker.

    .venv/bin/python -m tests.bench.processes [--sessions 16] [--seconds 30]

One embedded stack (PostgreSQL without fsync, Redis, the Temporal dev server in memory); `everloop
api` and `everloop worker` as real processes (forked ready-imported, tests/processes.py); the
simulator in this process as the LLM over HTTP, each reply a first token after 0.2 s and then five
words 20 ms apart (a short, fast model). Three runs of `--seconds` each, every one with processes,
a task queue and sessions of its own:

 1. 1 API + 1 worker;
 2. 2 APIs + 2 workers;
 3. 2 APIs + 2 workers, one worker killed (SIGKILL) a third of the way in; none replaces it.

The load: `--sessions` clients, each following its session's SSE stream on one API (sessions
alternate between the APIs) and POSTing its next message to that API as soon as the stream has
carried the previous turn's end, until the time is up; turns sent by then are awaited (60 s each).
Each session's first turn is not measured (the workflow exists, the worker and pools are warm), and
the window opens once every session's has ended.
Figures: turns/s (turns ended inside the window), p50/p95/p99/max turn time (POST to the turn's
end event on SSE), each worker's share of the turns' LLM steps (the worker that ended each `reason`
activity, first turns included, from Temporal's histories: tests/loop/placement.py), and errors
(refused POSTs, failed turns, turns not ended in 60 s). For the kill: turns lost (sent but never
stored as completed, or stored twice: must be 0), the steps retried on the other worker, and the
time to recover: from the kill until the last turn then in flight ended, and the turn rate before
the kill and after that.
Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import msgspec
from sqlalchemy import func, select

from api.simulator import create_simulator_app
from core import temporal
from core.db import Database
from core.db.models import Event, Message
from core.logging import configure_logging
from core.settings import LogFormat
from everloop.stack import Endpoints
from everloop.stack.process import free_port, wait_until
from tests import factories, processes
from tests.bench.stack import run_on_fresh_stack
from tests.loop.placement import identity, placement, until_polling
from tests.servers import running
from tests.sse import SSE

SIMULATOR = {
    "mode": "fixed",
    "text": "one two three four five",
    "first_token_delay": 0.2,
    "chunk_delay": 0.02,
}
TURN_ENDS = {"turn.completed", "turn.failed", "turn.cancelled"}
TURN_TIMEOUT_S = 60.0
# Booting a process takes seconds on a quiet machine, minutes on a loaded one.
BOOT_TIMEOUT_S = 300.0
MASTER_KEY = base64.b64encode(b"b" * 32).decode()


class Turn(msgspec.Struct, kw_only=True):
    session: str
    sent: float  # seconds into the run
    accepted: bool = False  # the POST was answered 201
    ended: float | None = None
    outcome: str | None = None  # the end event's type; None: refused or not ended in time


class Run(msgspec.Struct, kw_only=True):
    name: str
    seconds: float
    turns: list[Turn]
    workers: list[str]  # Temporal identities, in start order
    killed_at: float | None = None  # monotonic
    shares: Counter[str] = msgspec.field(default_factory=Counter)  # reason steps ended, per worker
    retried: int = 0  # reason steps ended by an attempt after the first
    warmed: int = 0  # first turns, one per session, accepted and not measured
    stored_completed: int = 0  # the first turns' included
    duplicates: int = 0  # stored outcomes beyond one per turn


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def environment(endpoints: Endpoints, data_dir: Path, queue: str) -> dict[str, str]:
    return {
        **os.environ,
        **endpoints.as_env(),
        "EVERLOOP_DATA_DIR": str(data_dir),
        "AUTH_MODE": "none",
        "SECRETS_ENCRYPTION_KEY": MASTER_KEY,
        "TEMPORAL_TASK_QUEUE": queue,
        "LOG_LEVEL": "WARNING",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }


@contextmanager
def worker_processes(env: dict[str, str], log_dir: Path, count: int) -> Iterator[list[processes.CliProcess]]:
    started = [processes.start(["worker"], env, log_dir / f"worker-{i}.log") for i in range(count)]
    try:
        yield started
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=30)


class Window(msgspec.Struct):
    """The measured time, set once every session's first turn (not counted) has ended."""

    seconds: float
    ready: asyncio.Barrier
    go: asyncio.Event = msgspec.field(default_factory=asyncio.Event)
    start: float = 0.0
    until: float = 0.0


@contextmanager
def api_processes(env: dict[str, str], log_dir: Path, count: int) -> Iterator[list[str]]:
    """As tests/processes.py's, with the time a machine busy with other work takes to boot them."""
    started, bases = [], []
    try:
        for i in range(count):
            port = free_port()
            started.append(
                processes.start(["api"], {**env, "EVERLOOP_PORT": str(port)}, log_dir / f"api-{i}.log")
            )
            bases.append(f"http://127.0.0.1:{port}")
        for base in bases:
            wait_until(f"the API at {base}", functools.partial(healthy, base), timeout=BOOT_TIMEOUT_S)
        yield bases
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=30)


def healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


async def one_turn(http: httpx.AsyncClient, sse: SSE, turn: Turn, text: str) -> None:
    """Sends `text` to the session and reads its stream up to that turn's end."""
    response = await http.post(f"{turn.session}/messages", json=factories.text_message(text))
    if response.status_code != 201:
        return
    turn.accepted = True
    message_id = response.json()["id"]
    while turn.outcome is None:
        frame = await sse.next(TURN_TIMEOUT_S)
        if frame.id is None:  # live deltas and keep-alives
            continue
        data = frame.json()
        context = data.get("context") or {}
        if data["type"] in TURN_ENDS and context.get("input_message_id") == message_id:
            turn.ended, turn.outcome = time.monotonic(), data["type"]


async def client_loop(base_url: str, path: str, window: Window, warm: list[Turn], turns: list[Turn]) -> None:
    """One session's client: follows its stream; a first turn that warms the workflow up, then,
    within the window, a message, its turn's end, the next message."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30, read=TURN_TIMEOUT_S)) as http,
        http.stream("GET", f"{path}/events", headers={"accept": "text/event-stream"}) as stream,
    ):
        sse = SSE(stream)
        assert (await sse.event()).event == "connected"
        warm.append(Turn(session=path, sent=time.monotonic()))
        try:
            await one_turn(http, sse, warm[-1], "hello")
        finally:
            await window.ready.wait()
        await window.go.wait()
        n = 0
        while time.monotonic() < window.until:
            turn = Turn(session=path, sent=time.monotonic())
            turns.append(turn)
            n += 1
            try:
                await one_turn(http, sse, turn, f"message {n}")
            except TimeoutError:
                return  # this session's stream is stuck: counted as not ended


async def run_load(
    name: str,
    endpoints: Endpoints,
    data_dir: Path,
    simulator_url: str,
    args: argparse.Namespace,
    *,
    apis: int,
    workers: int,
    kill: bool = False,
) -> Run:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    log_dir = data_dir / "logs" / queue
    log_dir.mkdir(parents=True)
    env = environment(endpoints, data_dir, queue)
    client = await temporal.connect(endpoints.temporal_address, "default")
    with ExitStack() as stack:
        pool = stack.enter_context(worker_processes(env, log_dir, workers))
        bases = stack.enter_context(api_processes(env, log_dir, apis))
        names = [identity(p.pid) for p in pool]
        await until_polling(client, queue, set(names), timeout=BOOT_TIMEOUT_S)
        async with httpx.AsyncClient(base_url=bases[0], timeout=30) as http:
            provider = await factories.provider(http, base_url=simulator_url)
            model = await factories.model(http, provider["id"], settings=SIMULATOR)
            agent = await factories.agent(http, default_model_id=model["id"])
            paths = [
                f"/v1/agents/{agent['id']}/sessions/{(await factories.session(http, agent['id']))['id']}"
                for _ in range(args.sessions)
            ]
        warm: list[Turn] = []
        turns: list[Turn] = []
        window = Window(args.seconds, asyncio.Barrier(len(paths) + 1))
        loops = [
            asyncio.create_task(client_loop(bases[i % len(bases)], path, window, warm, turns))
            for i, path in enumerate(paths)
        ]
        await window.ready.wait()
        start = window.start = time.monotonic()
        window.until = start + args.seconds
        window.go.set()
        killed_at = None
        if kill:
            await asyncio.sleep(args.seconds / 3)
            pool[0].kill()
            killed_at = time.monotonic()
        await asyncio.gather(*loops)
        run = Run(name=name, seconds=args.seconds, turns=turns, workers=names, killed_at=killed_at)
        run.warmed = sum(1 for t in warm if t.accepted)
        run.turns = [
            msgspec.structs.replace(
                t, sent=t.sent - start, ended=None if t.ended is None else t.ended - start
            )
            for t in turns
        ]
        if killed_at is not None:
            run.killed_at = killed_at - start
        await count_stored(run, endpoints, [p.rsplit("/", 1)[1] for p in paths])
        for ran in await asyncio.gather(
            *(placement(client, f"session-{p.rsplit('/', 1)[1]}") for p in paths)
        ):
            for step in ran.steps:
                if step.activity == "reason":
                    run.shares[step.worker] += 1
                    run.retried += step.attempt > 1
    return run


async def count_stored(run: Run, endpoints: Endpoints, session_ids: list[str]) -> None:
    """What the database holds: completed turns, and any outcome stored twice."""
    db = Database(endpoints.database_url, pool_size=2)
    try:
        async with db.session() as s:
            ids = [uuid.UUID(sid) for sid in session_ids]
            kinds = ("turn.started", "turn.completed", "message.agent", "llm.generation")
            query = (
                select(Event.session_id, Event.type, func.count())
                .where(Event.session_id.in_(ids), Event.type.in_(kinds))
                .group_by(Event.session_id, Event.type)
            )
            counts = {(sid, kind): n for sid, kind, n in (await s.execute(query)).all()}
            users = dict(
                (
                    await s.execute(
                        select(Message.session_id, func.count())
                        .where(Message.session_id.in_(ids), Message.role == "user")
                        .group_by(Message.session_id)
                    )
                ).all()
            )
        for sid in ids:
            completed = counts.get((sid, "turn.completed"), 0)
            run.stored_completed += completed
            # One of each per turn that ran: more is an outcome stored twice.
            run.duplicates += sum(max(0, counts.get((sid, kind), 0) - users.get(sid, 0)) for kind in kinds)
    finally:
        await db.dispose()


def report(run: Run) -> None:
    ended = [t for t in run.turns if t.ended is not None]
    in_window = [t for t in ended if t.ended is not None and t.ended <= run.seconds]
    times = [1000 * (t.ended - t.sent) for t in ended if t.ended is not None]
    accepted = sum(1 for t in run.turns if t.accepted)
    unended = sum(1 for t in run.turns if t.accepted and t.ended is None)
    failed = sum(1 for t in ended if t.outcome != "turn.completed")
    print(f"\n{run.name}: {len(run.turns)} turns sent in {run.seconds:.0f} s")
    print(f"  turns/s (ended in the window)  {len(in_window) / run.seconds:7.1f}")
    if times:
        print(
            f"  turn time ms                   p50 {statistics.median(times):7.0f}"
            f"  p95 {pct(times, 0.95):7.0f}"
            f"  p99 {pct(times, 0.99):7.0f}  max {max(times):7.0f}"
        )
    total = sum(run.shares.values()) or 1
    shares = ", ".join(
        f"worker {i}{' (killed)' if run.killed_at is not None and i == 0 else ''} "
        f"{100 * run.shares[w] / total:.0f}% ({run.shares[w]})"
        for i, w in enumerate(run.workers)
    )
    print(f"  LLM steps per worker           {shares}")
    print(
        f"  errors                         POSTs refused {len(run.turns) - accepted},"
        f" not ended in {TURN_TIMEOUT_S:.0f} s {unended}, failed {failed}"
    )
    lost = accepted + run.warmed - run.stored_completed
    print(
        f"  stored: turns completed {run.stored_completed}, lost {lost}, outcomes stored twice"
        f" {run.duplicates}, steps retried {run.retried}"
    )
    if run.killed_at is not None:
        kill = run.killed_at
        in_flight = [t for t in ended if t.sent <= kill and t.ended is not None and t.ended > kill]
        last = max((t.ended for t in in_flight if t.ended is not None), default=kill)
        before = sum(1 for t in ended if t.ended is not None and t.ended <= kill) / kill
        after_window = run.seconds - last
        recovered = sum(1 for t in ended if t.ended is not None and last < t.ended <= run.seconds)
        after = (
            f"{recovered / after_window:.1f}"
            if after_window >= 2
            else "- (the window ended first: a longer --seconds)"
        )
        print(
            f"  killed worker 0 at {kill:.1f} s: {len(in_flight)} turns in flight, the last ended"
            f" {last - kill:.1f} s after the kill; turns/s before {before:.1f}, after {after}"
        )


async def bench(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    with running(create_simulator_app(), health_path="/simulator/v1/models") as simulator:
        url = f"{simulator.url}/simulator/v1"
        runs = [
            ("1 API + 1 worker", 1, 1, False),
            ("2 APIs + 2 workers", 2, 2, False),
            ("2 APIs + 2 workers, worker 0 killed", 2, 2, True),
        ]
        for name, apis, workers, kill in runs:
            print(f"running: {name}...", flush=True)
            run = await run_load(name, endpoints, data_dir, url, args, apis=apis, workers=workers, kill=kill)
            report(run)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.processes", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sessions", type=int, default=16, help="concurrent sessions (default 16)")
    parser.add_argument("--seconds", type=float, default=30, help="length of each run (default 30)")
    args = parser.parse_args(argv)
    configure_logging("WARNING", LogFormat.CONSOLE)

    async def run(endpoints: Endpoints, data_dir: Path) -> None:
        await bench(endpoints, data_dir, args)

    return run_on_fresh_stack(run)


if __name__ == "__main__":
    sys.exit(main())
