"""Where a one-tool turn's time goes: loop_latency.py's turn (a), instrumented.

    .venv/bin/python -m tests.bench.loop_profile [--iterations 20]

The same rig as tests/bench/loop_latency.py (the API under uvicorn in a thread, `build_worker`'s
worker and the simulator in this process, one embedded stack), with timers around:
 - each activity the worker runs (an activity interceptor: `reason`, `run_tool`, local `finish_turn`);
 - each SQL statement and transaction, by SQLAlchemy's engine events (every engine of the process:
   the API's thread and the worker's are told apart by thread);
 - the streamed litellm call (`activities.provider.stream_call`) and each Redis publish
   (`services.events._send`);
 - the POST, from the request to its answer.
Per turn, medians over the iterations. What no timer covers is Temporal's: the time between
activities (the workflow's tasks, the server's transitions, the poll round trips), which the bare
workflow measures without the loop's work. The instruments cost a little time of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import msgspec
from sqlalchemy import event
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor, Worker

import activities.provider
import everloop.worker
from api.app import create_app
from api.simulator import create_simulator_app
from core import bus, temporal
from core.db import Database
from core.logging import configure_logging
from core.settings import LogFormat, load_settings
from everloop.stack import Endpoints
from everloop.worker import build_worker
from services import events
from services.events import channel
from tests import factories
from tests.bench.bare import BareTurn, Steps
from tests.bench.loop_latency import SCRIPT, SETTLE_S, TURN_TIMEOUT_S, subscribe
from tests.bench.stack import run_on_fresh_stack
from tests.servers import running


class Span(msgspec.Struct, frozen=True):
    kind: str  # activity, sql, tx, llm, redis, post
    name: str
    start: float
    end: float
    thread: str  # "api" or "worker"


class Recorder:
    """Spans of the process's work while `on`; one list per turn."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.main = threading.get_ident()

    def thread(self) -> str:
        return "worker" if threading.get_ident() == self.main else "api"

    def add(self, kind: str, name: str, start: float) -> None:
        self.spans.append(Span(kind, name, start, time.perf_counter(), self.thread()))

    @contextmanager
    def installed(self) -> Iterator[None]:
        """SQLAlchemy's events on every engine, the litellm call and Redis publishes wrapped."""
        started: dict[int, float] = {}
        began: dict[int, float] = {}

        def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            started[id(cursor)] = time.perf_counter()

        def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if (at := started.pop(id(cursor), None)) is not None:
                self.add("sql", _statement(statement), at)

        def begin(conn: Any) -> None:
            began[id(conn)] = time.perf_counter()

        def end(conn: Any) -> None:
            if (at := began.pop(id(conn), None)) is not None:
                self.add("tx", "transaction", at)

        hooks: list[tuple[str, Callable[..., None]]] = [
            ("before_cursor_execute", before),
            ("after_cursor_execute", after),
        ]
        hooks += [("begin", begin), ("commit", end), ("rollback", end)]
        for name, fn in hooks:
            event.listen(Engine, name, fn)
        real_call, real_send = activities.provider.stream_call, events._send

        async def stream_call(*args: Any) -> list[Any]:
            at = time.perf_counter()
            try:
                return await real_call(*args)
            finally:
                self.add("llm", "stream_call", at)

        async def send(*args: Any) -> bool:
            at = time.perf_counter()
            try:
                return await real_send(*args)
            finally:
                self.add("redis", "publish", at)

        try:
            with (
                mock.patch.object(activities.provider, "stream_call", stream_call),
                mock.patch.object(events, "_send", send),
            ):
                yield
        finally:
            for name, fn in hooks:
                event.remove(Engine, name, fn)


def _statement(sql: str) -> str:
    """A statement's verb and table: `SELECT events`, `UPDATE sessions`, `INSERT INTO spans`."""
    words = sql.split()
    if words[0] == "SELECT" and "FROM" in words:
        return f"SELECT {words[words.index('FROM') + 1]}"
    return " ".join(words[:3] if words[0] == "INSERT" else words[:2])


class Timed(Interceptor):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TimedActivity(next, self.recorder)


class _TimedActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, recorder: Recorder) -> None:
        super().__init__(next)
        self.recorder = recorder

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        at = time.perf_counter()
        try:
            return await self.next.execute_activity(input)
        finally:
            self.recorder.add("activity", getattr(input.fn, "__name__", "?"), at)


@contextmanager
def intercepted(recorder: Recorder) -> Iterator[None]:
    """`build_worker`'s worker with the timing interceptor after its own."""
    real: Callable[..., Worker] = Worker

    def make(*args: Any, **kwargs: Any) -> Worker:
        kwargs["interceptors"] = [*kwargs.get("interceptors", []), Timed(recorder)]
        return real(*args, **kwargs)

    with mock.patch.object(everloop.worker, "Worker", make):
        yield


@dataclass
class Rig:
    http: httpx.AsyncClient
    pubsub: Any
    client: Client
    bare_queue: str
    agent_id: str


@asynccontextmanager
async def open_rig(
    endpoints: Endpoints, data_dir: Path, simulator_url: str, recorder: Recorder
) -> AsyncIterator[Rig]:
    queue = f"bench-{uuid.uuid4().hex[:12]}"
    env = {**endpoints.as_env(), "EVERLOOP_DATA_DIR": str(data_dir), "AUTH_MODE": "none"}
    settings = load_settings({**env, "TEMPORAL_TASK_QUEUE": queue})
    client = await temporal.connect(endpoints.temporal_address, settings.temporal_namespace)
    async with AsyncExitStack() as stack:
        db = Database(endpoints.database_url)
        stack.push_async_callback(db.dispose)
        redis = bus.connect(endpoints.redis_url)
        stack.push_async_callback(redis.aclose)
        with intercepted(recorder):
            loop_worker = build_worker(client, settings, db, redis)
        bare_worker = Worker(
            client,
            task_queue=f"{queue}-bare",
            workflows=[BareTurn],
            workflow_runner=temporal.workflow_runner(),
            activities=[Steps().step],
        )
        await stack.enter_async_context(loop_worker)
        await stack.enter_async_context(bare_worker)
        api = stack.enter_context(running(create_app(settings, configure_logs=False)))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=api.url, timeout=30))
        pubsub = redis.pubsub()
        stack.push_async_callback(pubsub.aclose)
        provider = await factories.provider(http, base_url=simulator_url)
        model = await factories.model(http, provider["id"], settings=SCRIPT)
        agent = await factories.agent(http, default_model_id=model["id"], capabilities=["test_math"])
        yield Rig(http, pubsub, client, f"{queue}-bare", agent["id"])


async def one_turn(rig: Rig, recorder: Recorder) -> tuple[float, float, list[Span]]:
    """A one-tool turn in a fresh session: its start, the moment of `turn.completed`, its spans."""
    created = await factories.session(rig.http, rig.agent_id)
    session = f"/v1/agents/{rig.agent_id}/sessions/{created['id']}"
    name = channel(uuid.UUID(created["id"]))
    await subscribe(rig.pubsub, name)
    recorder.spans = []
    start = time.perf_counter()
    completed = 0.0

    async def post() -> httpx.Response:
        at = time.perf_counter()
        try:
            return await rig.http.post(f"{session}/messages", json=factories.text_message("1+2?"))
        finally:
            recorder.add("post", "POST messages", at)

    posting = asyncio.create_task(post())
    async with asyncio.timeout(TURN_TIMEOUT_S):
        while True:
            message = await rig.pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is None:
                continue
            kind = msgspec.json.decode(message["data"])["type"]
            if kind == "turn.completed":
                completed = time.perf_counter()
            elif kind == "session.idled":
                break
    spans = recorder.spans
    await rig.pubsub.unsubscribe(name)
    response = await posting
    assert response.status_code == 201, response.text
    return start, completed, spans


def summarise(turns: list[tuple[float, float, list[Span]]], bare_ms: list[float]) -> None:
    rows: dict[str, list[float]] = defaultdict(list)
    for start, completed, spans in turns:
        per: dict[str, float] = defaultdict(float)
        per["turn: POST -> turn.completed"] = (completed - start) * 1000
        for span in spans:
            if span.start > completed:
                continue  # after the turn's end (the session's idle bookkeeping)
            # `finish_turn` publishes `turn.completed` before it returns: counted up to then.
            took = (min(span.end, completed) - span.start) * 1000
            if span.kind == "activity":
                per[f"activity {span.name}"] += took
                per["activities, all"] += took
            elif span.kind in ("sql", "tx"):
                per[f"{span.kind} {span.thread}: count"] += 1
                per[f"{span.kind} {span.thread}: ms"] += took
            else:
                per[f"{span.kind} {span.name}"] += took
                per[f"{span.kind} {span.name}: count"] += 1
        first = min((s.start for s in spans if s.kind == "activity"), default=completed)
        per["POST -> first activity starts"] = (first - start) * 1000
        per["between activities (Temporal), after the first"] = (completed - first) * 1000 - per[
            "activities, all"
        ]
        for key, value in per.items():
            rows[key].append(value)
    print(f"\nmedians over {len(turns)} one-tool turns (a fresh session each), ms or counts")
    print(
        f"  bare workflow (loop_latency's (b)), ms                        {statistics.median(bare_ms):8.1f}"
    )
    for key in sorted(rows, key=lambda k: (not k.startswith("turn"), k)):
        values = rows[key] + [0.0] * (len(turns) - len(rows[key]))
        print(f"  {key:<60}{statistics.median(values):8.1f}")
    steps(turns)
    # One turn's statements, for the record: what each transaction sends.
    _, completed, spans = turns[len(turns) // 2]
    print("\none turn's SQL, in order (thread, ms, statement's first words); transactions close a group")
    for span in spans:
        if span.kind in ("sql", "tx") and span.start <= completed:
            took = (span.end - span.start) * 1000
            mark = "  --" if span.kind == "tx" else "    "
            print(f"{mark} {span.thread:<6} {took:6.2f}  {span.name}")


def steps(turns: list[tuple[float, float, list[Span]]]) -> None:
    """Each activity of the turn, and what ran inside it (the worker's spans it contains)."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _, completed, spans in turns:
        seen: dict[str, int] = defaultdict(int)
        for act in sorted(
            (s for s in spans if s.kind == "activity" and s.start <= completed), key=lambda s: s.start
        ):
            seen[act.name] += 1
            name = f"{act.name} #{seen[act.name]}" if seen[act.name] > 1 else act.name
            inside = [
                s
                for s in spans
                if s.thread == "worker" and s.kind != "activity" and act.start <= s.start and s.end <= act.end
            ]
            row = table[name]
            row["total"].append((act.end - act.start) * 1000)
            for kind in ("tx", "sql", "llm", "redis"):
                mine = [s for s in inside if s.kind == kind]
                row[f"{kind} n"].append(len(mine))
                row[f"{kind} ms"].append(sum((s.end - s.start) * 1000 for s in mine))
            tx = sum((s.end - s.start) * 1000 for s in inside if s.kind == "tx")
            other = (act.end - act.start) * 1000 - tx - row["llm ms"][-1] - row["redis ms"][-1]
            row["rest ms"].append(other)
            row["tx-sql ms"].append(tx - row["sql ms"][-1])
    columns = [
        "total",
        "tx n",
        "tx ms",
        "sql n",
        "sql ms",
        "tx-sql ms",
        "llm ms",
        "redis n",
        "redis ms",
        "rest ms",
    ]
    print("\neach activity, medians: its transactions (tx, begin to commit, the statements within), SQL")
    print("statements, the time in transactions outside the statements (tx-sql: SQLAlchemy, our code,")
    print("BEGIN and COMMIT), the litellm call, Redis publishes, the rest (outside all of those)")
    print(f"  {'':<14}" + "".join(f"{c:>10}" for c in columns))
    for name, row in table.items():
        print(f"  {name:<14}" + "".join(f"{statistics.median(row[c]):10.1f}" for c in columns))


async def bench(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    recorder = Recorder()
    with running(create_simulator_app(), "/simulator/v1/models") as simulator, recorder.installed():
        async with open_rig(endpoints, data_dir, f"{simulator.url}/simulator/v1", recorder) as rig:
            turns: list[tuple[float, float, list[Span]]] = []
            bare_ms: list[float] = []
            for i in range(args.warmup + args.iterations):
                turn = await one_turn(rig, recorder)
                await asyncio.sleep(SETTLE_S)
                at = time.perf_counter()
                await rig.client.execute_workflow(
                    BareTurn.run, 1, id=f"bare-{uuid.uuid4()}", task_queue=rig.bare_queue
                )
                took = (time.perf_counter() - at) * 1000
                await asyncio.sleep(SETTLE_S)
                if i >= args.warmup:
                    turns.append(turn)
                    bare_ms.append(took)
    summarise(turns, bare_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.loop_profile", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--iterations", type=int, default=20, help="measured turns (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="turns run first and discarded (default 3)")
    args = parser.parse_args(argv)
    configure_logging("WARNING", LogFormat.CONSOLE)
    import litellm

    litellm.suppress_debug_info = True
    return run_on_fresh_stack(lambda endpoints, data_dir: bench(endpoints, data_dir, args))


if __name__ == "__main__":
    sys.exit(main())
