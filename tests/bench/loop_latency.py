"""Loop latency: what a one-tool turn and a 10-step turn cost on top of Temporal, and how soon a
client sees its POST.

    .venv/bin/python -m tests.bench.loop_latency [--iterations 30] [--steps 10] [--same-session] [--sweep]

One embedded stack (PostgreSQL, Redis, the Temporal dev server in memory). Per iteration, in turn:
 (a) POST a message -> its `turn.completed` frame on the session's Redis channel: the API under
     uvicorn, `build_worker`'s worker in this process, the simulator as the LLM (no delays) over HTTP;
     a fresh session each time unless `--same-session`;
 (b) `execute_workflow` of `BareTurn` (tests/bench/bare.py): the same activities as no-ops;
 (c) POST -> the session's first frame (`message.user`, published before the POST answers);
 (d) as (a), a turn of `--steps` reasoning steps: the simulator's script calls one tool per step,
     one after the other, then answers;
 (e) as (b), `BareTurn` with as many steps.
The loop's overhead is (a) - (b), and (d) - (e); per extra step, ((d) - (e) - ((a) - (b))) divided
by the steps the long turn has beyond the one-tool turn's two. `--steps 0` leaves (d) and (e) out.
`--sweep` then repeats the measurement with other worker options and, on a second Temporal dev
server each, other dynamic config (the one-tool turn only). Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import msgspec
from redis.asyncio.client import PubSub
from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, PollerBehaviorSimpleMaximum, Worker

import everloop.worker
from api.app import create_app
from api.simulator import create_simulator_app
from core import bus, temporal
from core.db import Database
from core.logging import configure_logging
from core.settings import LogFormat, load_settings
from everloop.stack import Endpoints
from everloop.stack import services as stack_services
from everloop.stack.process import ManagedProcess, free_port
from everloop.worker import build_worker
from services.events import channel
from tests import factories
from tests.bench.bare import BareTurn, Steps
from tests.bench.stack import run_on_fresh_stack
from tests.servers import running

ADD = {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}
SCRIPT = {"mode": "script", "script": [ADD, "3"]}
TARGET_RATIO = 1.2
# Issue 18: what the loop adds to the bare workflow, for the one-tool turn and per step beyond it.
TARGET_OVERHEAD_MS = 25.0
TARGET_PER_STEP_MS = 8.0
TARGET_FIRST_FRAME_MS = 20.0
TURN_TIMEOUT_S = 30.0
# Between measurements: a finished turn still continues its workflow as new, and that work should
# not land on the next measurement (a person takes longer than this to type the next message).
SETTLE_S = 0.05
CURRENT = dict(stack_services.TEMPORAL_DYNAMIC_CONFIG)


class Setup(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    # None: the stack's own Temporal server; a dict: a second dev server with exactly this dynamic config.
    server: dict[str, str] | None = None
    worker: dict[str, Any] = msgspec.field(default_factory=dict)


BASELINE = Setup(name="baseline (above): the stack's server, build_worker as is")
SWEEP = [
    Setup(name="server: no dynamic config (transferProcessorMaxPollRPS 20)", server={}),
    Setup(name="server: as services.py, on a second server (A/A check)", server=CURRENT),
    Setup(
        name="server: + 1 task queue partition (default 4)",
        server={
            **CURRENT,
            "matching.numTaskqueueReadPartitions": "1",
            "matching.numTaskqueueWritePartitions": "1",
        },
    ),
    Setup(
        name="worker: 2 workflow / 1 activity pollers",
        worker={
            "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(2),
            "activity_task_poller_behavior": PollerBehaviorSimpleMaximum(1),
        },
    ),
    Setup(
        name="worker: 20 workflow / 20 activity pollers",
        worker={
            "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(20),
            "activity_task_poller_behavior": PollerBehaviorSimpleMaximum(20),
        },
    ),
    Setup(
        name="worker: autoscaling pollers",
        worker={
            "workflow_task_poller_behavior": PollerBehaviorAutoscaling(),
            "activity_task_poller_behavior": PollerBehaviorAutoscaling(),
        },
    ),
    Setup(name="worker: nonsticky_to_sticky_poll_ratio 1.0", worker={"nonsticky_to_sticky_poll_ratio": 1.0}),
    # Temporal 1.32 hands activities out eagerly already (system.enableActivityEagerExecution).
    Setup(name="worker: disable_eager_activity_execution", worker={"disable_eager_activity_execution": True}),
    Setup(name="worker: max_cached_workflows 0 (no sticky cache)", worker={"max_cached_workflows": 0}),
]


class Figures(msgspec.Struct):
    turn_ms: list[float] = msgspec.field(default_factory=list)
    bare_ms: list[float] = msgspec.field(default_factory=list)
    first_frame_ms: list[float] = msgspec.field(default_factory=list)
    long_turn_ms: list[float] = msgspec.field(default_factory=list)
    long_bare_ms: list[float] = msgspec.field(default_factory=list)
    # Per frame (or bare step), in order of arrival: milliseconds after the POST (or the start).
    turn_steps: dict[str, list[float]] = msgspec.field(default_factory=lambda: defaultdict(list))
    bare_steps: dict[str, list[float]] = msgspec.field(default_factory=lambda: defaultdict(list))


class Rig:
    """The real loop and the bare workflow, each with its own worker, on one Temporal server."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        pubsub: PubSub,
        client: Client,
        bare_queue: str,
        steps: Steps,
        long_steps: int = 0,
    ) -> None:
        self.http, self.pubsub, self.client = http, pubsub, client
        self.bare_queue, self.steps = bare_queue, steps
        # The long turn's reasoning steps: one tool call in each but the last.
        self.long_steps = long_steps
        self.agent_id = self.long_agent_id = ""
        self.session = self.long_session = ""

    async def prepare(self, simulator_url: str) -> None:
        provider = await factories.provider(self.http, base_url=simulator_url)
        self.agent_id = await self._agent(provider["id"], SCRIPT)
        if self.long_steps:
            script = {"mode": "script", "script": [*[ADD] * (self.long_steps - 1), "3"]}
            self.long_agent_id = await self._agent(provider["id"], script)

    async def _agent(self, provider_id: str, script: dict[str, Any]) -> str:
        model = await factories.model(self.http, provider_id, settings=script)
        agent = await factories.agent(self.http, default_model_id=model["id"], capabilities=["test_math"])
        return str(agent["id"])

    async def _session(self, agent_id: str, current: str, same_session: bool) -> str:
        if same_session and current:
            return current
        created = await factories.session(self.http, agent_id)
        return f"/v1/agents/{agent_id}/sessions/{created['id']}"

    async def iteration(self, figures: Figures, same_session: bool, long_turn: bool = True) -> None:
        self.session = await self._session(self.agent_id, self.session, same_session)
        await self.turn(figures, self.session, 1)
        await asyncio.sleep(SETTLE_S)
        await self.bare(figures, 1)
        await asyncio.sleep(SETTLE_S)
        if long_turn and self.long_steps:
            self.long_session = await self._session(self.long_agent_id, self.long_session, same_session)
            await self.turn(figures, self.long_session, self.long_steps - 1, long=True)
            await asyncio.sleep(SETTLE_S)
            await self.bare(figures, self.long_steps - 1, long=True)
            await asyncio.sleep(SETTLE_S)

    async def turn(self, figures: Figures, session: str, tool_calls: int, *, long: bool = False) -> None:
        """One turn of `tool_calls` tool calls, one per step; the long turn's time goes to its own
        figures, the one-tool turn's frames are noted."""
        one_tool = not long
        name = channel(uuid.UUID(session.rsplit("/", 1)[1]))
        await subscribe(self.pubsub, name)
        seen: dict[str, int] = defaultdict(int)
        start = time.perf_counter()
        body = factories.text_message("1+2?")
        post = asyncio.create_task(self.http.post(f"{session}/messages", json=body))
        async with asyncio.timeout(TURN_TIMEOUT_S):
            # Up to `session.idled`, the turn's last frame: in --same-session, nothing is left over.
            while True:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is None:
                    continue
                at = (time.perf_counter() - start) * 1000
                kind = msgspec.json.decode(message["data"])["type"]
                if kind in ("turn.failed", "turn.cancelled"):
                    raise RuntimeError(f"the turn ended with {kind}")
                if one_tool and not seen:
                    figures.first_frame_ms.append(at)
                seen[kind] += 1
                if one_tool:
                    figures.turn_steps[f"{kind} #{seen[kind]}" if seen[kind] > 1 else kind].append(at)
                if kind == "turn.completed":
                    (figures.turn_ms if one_tool else figures.long_turn_ms).append(at)
                elif kind == "session.idled":
                    break
        await self.pubsub.unsubscribe(name)
        response = await post
        assert response.status_code == 201, response.text
        if seen["tool.call_completed"] != tool_calls or seen["reason.completed"] != tool_calls + 1:
            raise RuntimeError(f"not the {tool_calls}-tool turn this measures; its frames: {dict(seen)}")

    async def bare(self, figures: Figures, tool_calls: int, *, long: bool = False) -> None:
        self.steps.started.clear()
        start = time.perf_counter()
        await self.client.execute_workflow(
            BareTurn.run, tool_calls, id=f"bare-{uuid.uuid4()}", task_queue=self.bare_queue
        )
        done = time.perf_counter()
        if long:
            figures.long_bare_ms.append((done - start) * 1000)
            return
        figures.bare_ms.append((done - start) * 1000)
        seen: dict[str, int] = defaultdict(int)
        for step, at in [*self.steps.started, ("(result returned)", done)]:
            seen[step] += 1
            key = f"{step} #{seen[step]}" if seen[step] > 1 else step
            figures.bare_steps[key].append((at - start) * 1000)


async def subscribe(pubsub: PubSub, name: str) -> None:
    """Subscribes and waits for the confirmation: from then on no frame is missed."""
    await pubsub.subscribe(name)
    async with asyncio.timeout(5):
        while True:
            reply = await pubsub.get_message(timeout=1)
            if reply is not None and reply["type"] == "subscribe":
                return


@contextmanager
def worker_options(options: dict[str, Any]) -> Iterator[None]:
    """`build_worker` with extra `Worker` options: otherwise exactly the loop's worker."""
    with mock.patch.object(everloop.worker, "Worker", functools.partial(Worker, **options)):
        yield


@asynccontextmanager
async def open_rig(
    endpoints: Endpoints, data_dir: Path, simulator_url: str, worker: dict[str, Any], long_steps: int = 0
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
        with worker_options(worker):
            loop_worker = build_worker(client, settings, db, redis)
        steps = Steps()
        bare_worker = Worker(
            client,
            task_queue=f"{queue}-bare",
            workflows=[BareTurn],
            workflow_runner=temporal.workflow_runner(),
            activities=[steps.step],
            **worker,
        )
        await stack.enter_async_context(loop_worker)
        await stack.enter_async_context(bare_worker)
        api = stack.enter_context(running(create_app(settings, configure_logs=False)))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=api.url, timeout=30))
        pubsub = redis.pubsub()
        stack.push_async_callback(pubsub.aclose)
        rig = Rig(http, pubsub, client, f"{queue}-bare", steps, long_steps)
        await rig.prepare(simulator_url)
        yield rig


async def measure(
    rig: Rig, iterations: int, warmup: int, same_session: bool, long_turn: bool = True
) -> Figures:
    figures = Figures()
    for i in range(warmup + iterations):
        await rig.iteration(Figures() if i < warmup else figures, same_session, long_turn)
    return figures


@contextmanager
def temporal_server(data_dir: Path, dynamic_config: dict[str, str] | None) -> Iterator[str | None]:
    """None: use the stack's server. A dict: a second dev server started with exactly that config."""
    if dynamic_config is None:
        yield None
        return
    name = f"temporal-{uuid.uuid4().hex[:6]}"
    process: ManagedProcess | None = None
    try:
        # Blocking, in the loop's thread: the server's parent-death signal follows the thread that
        # started it, and a pool thread may go away before the server should.
        with mock.patch.dict(stack_services.TEMPORAL_DYNAMIC_CONFIG, dynamic_config, clear=True):
            process, address = stack_services.start_temporal(
                None, data_dir / "logs" / name, free_port(), None, "default", timeout=60
            )
        yield address
    finally:
        if process is not None:
            process.stop()


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def p50_p95(values: list[float]) -> str:
    return f"{pct(values, 50):7.1f} {pct(values, 95):7.1f}"


def report(figures: Figures, iterations: int, same_session: bool, long_steps: int) -> None:
    ratio = pct(figures.turn_ms, 50) / pct(figures.bare_ms, 50)
    overhead = pct(figures.turn_ms, 50) - pct(figures.bare_ms, 50)
    sessions = "the same session, one turn after another" if same_session else "a fresh session per turn"
    # Other work on the machine moves these figures: compare runs only at a similar, low load.
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{iterations} iterations, {sessions}; milliseconds        p50     p95")
    print(f"  (a) POST -> turn.completed (one tool call)    {p50_p95(figures.turn_ms)}")
    print(f"  (b) bare workflow, same activities as no-ops {p50_p95(figures.bare_ms)}")
    print(f"  (c) POST -> first frame (message.user)       {p50_p95(figures.first_frame_ms)}")
    if long_steps:
        print(f"  {f'(d) POST -> turn.completed ({long_steps} steps)':<45}{p50_p95(figures.long_turn_ms)}")
        print(f"  {f'(e) bare workflow, {long_steps} steps':<45}{p50_p95(figures.long_bare_ms)}")
    print(f"  p50(a) / p50(b) = {ratio:.2f}   (target <= {TARGET_RATIO})")
    print(f"  p50(c) = {pct(figures.first_frame_ms, 50):.1f} ms   (target <= {TARGET_FIRST_FRAME_MS:.0f} ms)")
    print(
        f"  loop overhead, one-tool turn: p50(a) - p50(b) = {overhead:.1f} ms"
        f"   (target <= {TARGET_OVERHEAD_MS:.0f} ms)"
    )
    if long_steps:
        long_overhead = pct(figures.long_turn_ms, 50) - pct(figures.long_bare_ms, 50)
        # The one-tool turn has two reasoning steps: each step beyond them is a reason and a tool call.
        extra = long_steps - 2
        print(f"  loop overhead, {long_steps}-step turn: p50(d) - p50(e) = {long_overhead:.1f} ms")
        if extra > 0:
            per_step = (long_overhead - overhead) / extra
            print(
                f"  per extra step: ({long_overhead:.1f} - {overhead:.1f}) / {extra} = {per_step:.1f} ms"
                f"   (target <= {TARGET_PER_STEP_MS:.0f} ms)"
            )
    print("\nwhere the time goes, median ms from the start")
    print("  (a) when each frame arrived                 (b) when each no-op activity started")
    turn = [(k, statistics.median(v)) for k, v in figures.turn_steps.items()]
    bare = [(k, statistics.median(v)) for k, v in figures.bare_steps.items()]
    for i in range(max(len(turn), len(bare))):
        left = f"{turn[i][0]:<30}{turn[i][1]:7.1f}" if i < len(turn) else " " * 37
        right = f"{bare[i][0]:<20}{bare[i][1]:7.1f}" if i < len(bare) else ""
        print(f"  {left}       {right}")


def sweep_row(name: str, figures: Figures, baseline: Figures) -> str:
    ratio = pct(figures.turn_ms, 50) / pct(figures.bare_ms, 50)
    delta_turn = pct(figures.turn_ms, 50) - pct(baseline.turn_ms, 50)
    delta_bare = pct(figures.bare_ms, 50) - pct(baseline.bare_ms, 50)
    load = os.getloadavg()[0]  # 1-minute average: other work on the machine shows here
    return (
        f"  {name:<56}{p50_p95(figures.turn_ms)}  {p50_p95(figures.bare_ms)}  {ratio:5.2f}"
        f"  {p50_p95(figures.first_frame_ms)}  {delta_turn:+6.1f} {delta_bare:+6.1f}  {load:4.1f}"
    )


async def bench(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    run = functools.partial(
        measure, iterations=args.iterations, warmup=args.warmup, same_session=args.same_session
    )
    # The sweep compares settings on the one-tool turn alone, as it did before the long turn.
    sweep = functools.partial(run, long_turn=False)
    print(f"Temporal dynamic config {CURRENT}; the worker as everloop/worker.py builds it")
    with running(create_simulator_app(), "/simulator/v1/models") as simulator:
        simulator_url = f"{simulator.url}/simulator/v1"
        async with open_rig(endpoints, data_dir, simulator_url, {}, args.steps) as rig:
            baseline = await run(rig)
        report(baseline, args.iterations, args.same_session, args.steps)
        if not args.sweep:
            return
        # Each setting alone and back to back, as above: run alternately, each server would idle
        # half the time, and that hides its rate limits.
        print(f"\nsweep, {args.iterations} iterations each, ms; delta: p50 minus the baseline's p50")
        print(" " * 58 + "(a) p50     p95  (b) p50     p95  ratio  (c) p50     p95 delta(a)  (b)  load")
        print(sweep_row(BASELINE.name, baseline, baseline))
        for setup in [*SWEEP, msgspec.structs.replace(BASELINE, name="baseline again (drift check)")]:
            with temporal_server(data_dir, setup.server) as address:
                where = endpoints
                if address is not None:
                    where = msgspec.structs.replace(endpoints, temporal_address=address)
                async with open_rig(where, data_dir, simulator_url, setup.worker) as rig:
                    print(sweep_row(setup.name, await sweep(rig), baseline), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.loop_latency", description=__doc__.split("\n")[0]
    )
    # 30, not 50 as before the long turn: an iteration now runs both turns, and `make bench` should
    # stay within a few minutes (about 2 on a quiet machine).
    parser.add_argument("--iterations", type=int, default=30, help="measured iterations (default 30)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="iterations run first and discarded (default 5)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=10,
        help="reasoning steps of the long turn, one tool call in each but the last (default 10; 0: none)",
    )
    parser.add_argument("--same-session", action="store_true", help="every turn in one session, in turn")
    parser.add_argument("--sweep", action="store_true", help="then compare worker and Temporal settings")
    args = parser.parse_args(argv)
    if args.steps < 0:
        parser.error("--steps: 0 (no long turn) or more")
    configure_logging("WARNING", LogFormat.CONSOLE)
    # Imported here, after `core` (which keeps litellm from fetching its price table at import).
    import litellm

    # litellm prints a banner on each reply from the simulator (its model name has no provider prefix).
    litellm.suppress_debug_info = True
    return run_on_fresh_stack(lambda endpoints, data_dir: bench(endpoints, data_dir, args))


if __name__ == "__main__":
    sys.exit(main())
