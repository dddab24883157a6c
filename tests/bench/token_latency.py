"""Token latency: from the worker receiving a model's chunk to an SSE client receiving its
`output.message.delta` frame, through the real path (worker -> Redis -> `everloop api` -> SSE).

    .venv/bin/python -m tests.bench.token_latency [--turns 20] [--words 40] [--chunk-delay 0.01]

One embedded stack (PostgreSQL, Redis, the Temporal dev server in memory), and four processes:
 - this one: `build_worker`'s worker, and the simulator in a thread (`echo` mode, `--chunk-delay`
   seconds between its chunks: a model streaming at 1/delay tokens a second);
 - an `everloop api` process (uvicorn, as deployed; AUTH_MODE=none on loopback);
 - tests/bench/sse_probe.py, the SSE client, following the session's stream;
 - Redis.
Each turn sends `--words` unique words; the simulator echoes them a word per chunk. Each word is
timed at four points, all on CLOCK_MONOTONIC (`time.monotonic_ns()`, one clock for every process
of the machine): S, when the simulator has written its chunk to the socket (ASGI `send` returned);
R, when litellm hands the chunk to the worker's code (`activities.provider.stream_call` calls its
`on_delta`, wrapped here: production code is unchanged); P, when the worker's publish to Redis
returned; C, when the SSE client read the frame's last byte. The frame's own `ts` (wall clock, set
as the worker builds the frame) gives a fifth, against the client's wall clock.

The worker does not batch or coalesce deltas (activities/provider.py publishes each text chunk as it
comes, awaiting the publish before it reads the next chunk), so nothing waits in the worker on
purpose; S -> C counts everything from the worker's socket on (plus the loopback hop from the
simulator, tens of microseconds), R -> C leaves out litellm's own handling of the chunk. Figures
only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import msgspec

import activities.provider
from api.simulator import create_simulator_app
from core import bus, temporal
from core.db import Database
from core.logging import configure_logging
from core.settings import LogFormat, load_settings
from everloop.stack import Endpoints
from everloop.stack.process import ManagedProcess, free_port, wait_until
from everloop.worker import build_worker
from tests import factories
from tests.bench.sse_probe import Line
from tests.bench.stack import run_on_fresh_stack
from tests.servers import running

TARGET_P99_MS = 5.0
FRAME_TIMEOUT_S = 30.0
Asgi = Callable[..., Awaitable[None]]


class Chunk(msgspec.Struct):
    choices: list[dict[str, Any]] = msgspec.field(default_factory=list)


class Delta(msgspec.Struct):
    delta: str


class LiveFrame(msgspec.Struct):
    ts: datetime
    data: Delta


class Clocks:
    """Each word's moments (ns), as the points above name them; keyed by the word without its space."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.received: dict[str, int] = {}
        self.published: dict[str, int] = {}

    def simulator(self, app: Asgi) -> Asgi:
        """The simulator, noting when each chunk's bytes were handed to the socket."""
        decoder = msgspec.json.Decoder(Chunk)

        async def timed(scope: Any, receive: Any, send: Any) -> None:
            async def send_timed(message: dict[str, Any]) -> None:
                await send(message)
                if message["type"] == "http.response.body" and message.get("body"):
                    at = time.monotonic_ns()
                    for line in message["body"].split(b"\n"):
                        if line.startswith(b"data: {"):
                            for choice in decoder.decode(line[6:]).choices:
                                if content := choice.get("delta", {}).get("content"):
                                    self.sent[content.strip()] = at

            await app(scope, receive, send_timed)

        return timed

    @contextmanager
    def worker(self) -> Iterator[None]:
        """The worker's streamed call, noting when litellm hands each text chunk over (R) and when its
        publish returned (P): a wrapper of `on_delta`, the one place a chunk's text is seen."""
        real = activities.provider.stream_call

        async def stream_call(
            params: dict[str, Any],
            messages: list[dict[str, Any]],
            tools: list[dict[str, Any]],
            parallel_tool_calls: bool | None,
            on_delta: Callable[[str], Awaitable[None]],
        ) -> list[Any]:
            async def timed(delta: str) -> None:
                key = delta.strip()
                self.received[key] = time.monotonic_ns()
                await on_delta(delta)
                self.published[key] = time.monotonic_ns()

            return await real(params, messages, tools, parallel_tool_calls, timed)

        with mock.patch.object(activities.provider, "stream_call", stream_call):
            yield


class Figures(msgspec.Struct):
    sent_to_client: list[float] = msgspec.field(default_factory=list)
    received_to_client: list[float] = msgspec.field(default_factory=list)
    ts_to_client: list[float] = msgspec.field(default_factory=list)
    sent_to_received: list[float] = msgspec.field(default_factory=list)
    received_to_published: list[float] = msgspec.field(default_factory=list)
    published_to_client: list[float] = msgspec.field(default_factory=list)
    missing: int = 0


@contextmanager
def api_process(env: dict[str, str], data_dir: Path) -> Iterator[str]:
    """An `everloop api` process (uvicorn, as deployed) on a port of its own."""
    port = free_port()
    process = ManagedProcess(
        "api",
        [str(Path(sys.executable).with_name("everloop")), "api"],
        log_path=data_dir / "logs" / "api.log",
        env={**os.environ, **env, "EVERLOOP_PORT": str(port), "LOG_LEVEL": "WARNING"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        process.start()
        # Generous: on a loaded 2-core machine, importing the app alone has taken a minute.
        wait_until("everloop api", functools.partial(_healthy, url), timeout=300, process=process)
        yield url
    finally:
        process.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@asynccontextmanager
async def probe(url: str) -> AsyncIterator[asyncio.Queue[Line]]:
    """tests/bench/sse_probe.py following `url`; its frames, once its stream is connected."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.sse_probe", url, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    lines: asyncio.Queue[Line] = asyncio.Queue()
    decoder = msgspec.json.Decoder(Line)

    async def read(stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            lines.put_nowait(decoder.decode(line))

    reader = asyncio.create_task(read(process.stdout))
    try:
        first = await asyncio.wait_for(lines.get(), FRAME_TIMEOUT_S)
        assert first.type == "connected", first
        yield lines
    finally:
        process.terminate()
        await process.wait()
        reader.cancel()


def ms(ns: int) -> float:
    return ns / 1e6


async def turn(
    http: httpx.AsyncClient, path: str, lines: asyncio.Queue[Line], words: list[str]
) -> tuple[list[Line], float]:
    """Posts the words and returns the delta frames the client got up to `session.idled`."""
    start = time.monotonic()
    response = await http.post(f"{path}/messages", json=factories.text_message(" ".join(words)))
    assert response.status_code == 201, response.text
    deltas: list[Line] = []
    while (line := await asyncio.wait_for(lines.get(), FRAME_TIMEOUT_S)).type != "session.idled":
        if line.type in ("turn.failed", "turn.cancelled"):
            raise RuntimeError(f"the turn ended with {line.type}: {line.data}")
        if line.type == "output.message.delta":
            deltas.append(line)
    return deltas, (time.monotonic() - start) * 1000


def note(figures: Figures, clocks: Clocks, words: list[str], deltas: list[Line]) -> None:
    decoder = msgspec.json.Decoder(LiveFrame)
    seen: dict[str, tuple[Line, LiveFrame]] = {}
    for line in deltas:
        frame = decoder.decode(line.data)
        seen[frame.data.delta.strip()] = (line, frame)
    for word in words:
        if word not in seen or word not in clocks.sent or word not in clocks.received:
            figures.missing += 1
            continue
        line, frame = seen[word]
        sent, received, published = clocks.sent[word], clocks.received[word], clocks.published[word]
        figures.sent_to_client.append(ms(line.at_ns - sent))
        figures.received_to_client.append(ms(line.at_ns - received))
        figures.ts_to_client.append(ms(line.wall_ns - int(frame.ts.timestamp() * 1e9)))
        figures.sent_to_received.append(ms(received - sent))
        figures.received_to_published.append(ms(published - received))
        figures.published_to_client.append(ms(line.at_ns - published))


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def row(name: str, values: list[float]) -> str:
    figures = " ".join(f"{pct(values, p):7.2f}" for p in (50, 95, 99, 100))
    return f"  {name:<58}{figures}"


def report(figures: Figures, args: argparse.Namespace, turn_ms: list[float]) -> None:
    # Other work on the machine moves these figures, the tail most: compare runs at a similar load.
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rate = f"{1 / args.chunk_delay:.0f} chunks/s" if args.chunk_delay else "no delay between chunks"
    print(
        f"{args.turns} turns of {args.words} words ({rate}); {len(figures.sent_to_client)} tokens,"
        f" {figures.missing} missing; turn (POST -> session.idled) p50 {pct(turn_ms, 50):.0f} ms"
    )
    print(f"  milliseconds{' ' * 49}p50     p95     p99     max")
    print(row("S -> C: simulator wrote the chunk -> SSE client has it", figures.sent_to_client))
    print(row("R -> C: litellm handed it to the worker -> SSE client", figures.received_to_client))
    print(row("frame ts (worker, wall clock) -> SSE client (wall clock)", figures.ts_to_client))
    print("  its parts")
    print(row("S -> R: loopback, openai SDK and litellm parse the chunk", figures.sent_to_received))
    print(row("R -> P: the worker publishes (frame built, PUBLISH answered)", figures.received_to_published))
    print(row("P -> C: Redis -> API (follower, SSE) -> client", figures.published_to_client))
    print(f"  p99(S -> C) = {pct(figures.sent_to_client, 99):.2f} ms   (target <= {TARGET_P99_MS:.0f} ms)")


async def bench(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    queue = f"bench-{uuid.uuid4().hex[:12]}"
    env = {
        **endpoints.as_env(),
        "EVERLOOP_DATA_DIR": str(data_dir),
        "AUTH_MODE": "none",
        "TEMPORAL_TASK_QUEUE": queue,
    }
    settings = load_settings(env)
    clocks = Clocks()
    figures = Figures()
    turn_ms: list[float] = []
    simulator_app = clocks.simulator(create_simulator_app())
    async with AsyncExitStack() as stack:
        simulator = stack.enter_context(running(simulator_app, "/simulator/v1/models"))
        api_url = stack.enter_context(api_process(env, data_dir))
        client = await temporal.connect(endpoints.temporal_address, settings.temporal_namespace)
        db = Database(endpoints.database_url)
        stack.push_async_callback(db.dispose)
        redis = bus.connect(endpoints.redis_url)
        stack.push_async_callback(redis.aclose)
        stack.enter_context(clocks.worker())
        await stack.enter_async_context(build_worker(client, settings, db, redis))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=api_url, timeout=30))
        provider = await factories.provider(http, base_url=f"{simulator.url}/simulator/v1")
        echo = {"mode": "echo", "chunk_delay": args.chunk_delay}
        model = await factories.model(http, provider["id"], settings=echo)
        agent = await factories.agent(http, default_model_id=model["id"])
        session = await factories.session(http, agent["id"])
        path = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
        print(f"API at {api_url} (`everloop api`), SSE client tests/bench/sse_probe.py", flush=True)
        lines = await stack.enter_async_context(probe(f"{api_url}{path}/events"))
        for i in range(args.warmup + args.turns):
            words = [f"t{i}w{j:03d}" for j in range(args.words)]
            deltas, took = await turn(http, path, lines, words)
            if i >= args.warmup:
                note(figures, clocks, words, deltas)
                turn_ms.append(took)
    report(figures, args, turn_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.token_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--turns", type=int, default=20, help="measured turns (default 20)")
    parser.add_argument("--words", type=int, default=40, help="tokens streamed per turn (default 40)")
    parser.add_argument(
        "--chunk-delay", type=float, default=0.01, help="seconds between the model's chunks (default 0.01)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="turns run first and discarded (default 2)")
    args = parser.parse_args(argv)
    configure_logging("WARNING", LogFormat.CONSOLE)
    # Imported here, after `core` (which keeps litellm from fetching its price table at import).
    import litellm

    # litellm prints a banner on each reply from the simulator (its model name has no provider prefix).
    litellm.suppress_debug_info = True
    return run_on_fresh_stack(lambda endpoints, data_dir: bench(endpoints, data_dir, args))


if __name__ == "__main__":
    sys.exit(main())
