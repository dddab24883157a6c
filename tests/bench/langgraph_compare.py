"""Everloop's one-tool turn against LangGraph's, in one run: in-process with SQLite checkpoints, and
through `langgraph dev`'s HTTP API.

    uv run --group bench python -m tests.bench.langgraph_compare [--iterations 30] [--skip-everloop]

The simulator (no delays) serves every side over HTTP with the same script: call `add` once, then
answer "3" (tests/bench/loop_latency.py's SCRIPT). Per iteration, one after the other:
 (a) Everloop: POST a message -> its `turn.completed`, loop_latency.py's own iteration (its
     `Rig`: the API under uvicorn, the worker in this process, a fresh embedded stack, a fresh
     session per turn);
 (b) LangGraph in-process: `ainvoke` of tests/bench/langgraph_app/graph.py compiled with
     `AsyncSqliteSaver` on a file, a fresh thread per turn, LangGraph's default durability
     ("async": checkpoints written beside the next step); (b2) the same with durability="sync"
     (each step's checkpoint written before the next starts, as Everloop records each step first);
 (c) `langgraph dev` (a subprocess from .tools/langgraph, its in-memory runtime, no reload, no
     telemetry) on the same graph: a thread created first (untimed), then `runs.wait`, through the
     official SDK.
Targets (issue 18): p50(a) <= 1.5 x p50(b), and p50(c) >= 10 x p50(a). Figures only: nothing here
passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec

# The bench group is not installed by `make install`, yet `make lint` runs mypy over tests/ (see
# langgraph_app/graph.py).
from langchain_core.messages import HumanMessage  # type: ignore[import-not-found,unused-ignore]
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # type: ignore[import-not-found,unused-ignore]
from langgraph_sdk import get_client  # type: ignore[import-not-found,unused-ignore]
from langgraph_sdk.client import LangGraphClient  # type: ignore[import-not-found,unused-ignore]

from api.simulator import create_simulator_app
from core.logging import configure_logging
from core.settings import LogFormat
from everloop.stack import Endpoints
from everloop.stack.process import free_port
from tests.bench import loop_latency
from tests.bench.langgraph_app import graph as lg_graph
from tests.bench.loop_latency import Figures, Rig, open_rig, p50_p95, pct
from tests.bench.stack import run_on_fresh_stack
from tests.servers import running

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = Path(__file__).resolve().parent / "langgraph_app"
DEV_VENV = ROOT / ".tools" / "langgraph"
UV = ROOT / ".tools" / "bin" / "uv"
QUESTION = "1+2?"
TARGET_INPROCESS_RATIO = 1.5
TARGET_DEV_SPEEDUP = 10.0
START_TIMEOUT_S = 180.0
TURN_TIMEOUT_S = 60.0
# `langgraph dev` must not reach out: no CLI analytics, no version check against PyPI, no LangSmith.
OFFLINE_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_API_KEY": "",
    "LANGCHAIN_API_KEY": "",
}


class Samples(msgspec.Struct):
    inprocess_ms: list[float] = msgspec.field(default_factory=list)
    inprocess_sync_ms: list[float] = msgspec.field(default_factory=list)
    dev_ms: list[float] = msgspec.field(default_factory=list)
    # From `langgraph dev`'s own log, per measured run: waiting in its queue, then executing.
    dev_queue_ms: list[float] = msgspec.field(default_factory=list)
    dev_exec_ms: list[float] = msgspec.field(default_factory=list)


def check_answer(messages: list[Any]) -> None:
    """The turn measured is the one-tool turn: one tool result (3), then the answer "3"."""

    def field(message: Any, name: str) -> Any:
        return message[name] if isinstance(message, dict) else getattr(message, name)

    tools = [m for m in messages if field(m, "type") == "tool"]
    answer = field(messages[-1], "content")
    if len(tools) != 1 or '"result": 3' not in str(field(tools[0], "content")) or answer != "3":
        raise RuntimeError(f"not the one-tool turn this measures: {messages!r}")


async def inprocess_turn(graph: Any, durability: str) -> float:
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    start = time.perf_counter()
    async with asyncio.timeout(TURN_TIMEOUT_S):
        state = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, config, durability=durability)
    elapsed = (time.perf_counter() - start) * 1000
    check_answer(state["messages"])
    return elapsed


async def dev_turn(client: LangGraphClient) -> float:
    thread = await client.threads.create()
    # What a client of the server sends: the message as JSON, LangChain's message dict.
    message: Mapping[str, Any] = {"role": "user", "content": QUESTION}
    start = time.perf_counter()
    async with asyncio.timeout(TURN_TIMEOUT_S):
        state = await client.runs.wait(thread["thread_id"], "agent", input={"messages": [message]})
    elapsed = (time.perf_counter() - start) * 1000
    assert isinstance(state, dict), state
    check_answer(state["messages"])
    return elapsed


def server_timings(log_path: Path, runs: int, samples: Samples) -> None:
    """The last `runs` runs' queue and execution times, as `langgraph dev` logs each finished run."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text(errors="replace"))  # its console colours
    done = [line for line in text.splitlines() if "Background run succeeded" in line][-runs:]
    for line in done:
        queued, executed = re.search(r"run_wait_time_ms=(\d+)", line), re.search(r"run_exec_ms=(\d+)", line)
        if queued and executed:
            samples.dev_queue_ms.append(float(queued[1]))
            samples.dev_exec_ms.append(float(executed[1]))


def dev_cli(cli: Path | None) -> Path:
    """`langgraph` from its own virtualenv: langgraph-api pins structlog<26, the project needs >=26.1
    (langgraph_app/requirements.txt), so it cannot share the bench group's environment. Made here
    when missing, hash-checked, as the Makefile's `checkov` target makes .tools/checkov."""
    if cli is not None:
        return cli
    if not (DEV_VENV / "bin" / "python").exists():
        print(f"creating {DEV_VENV} for `langgraph dev`...", flush=True)
        subprocess.run(
            [str(UV), "venv", "--no-config", "--quiet", "--python", sys.executable, str(DEV_VENV)], check=True
        )
    subprocess.run(
        [
            str(UV),
            "pip",
            "sync",
            "--no-config",
            "--quiet",
            "--require-hashes",
            str(APP_DIR / "requirements.txt"),
        ],
        env={**os.environ, "VIRTUAL_ENV": str(DEV_VENV)},
        check=True,
    )
    return DEV_VENV / "bin" / "langgraph"


@contextmanager
def langgraph_dev(cli: Path, simulator_url: str, work_dir: Path) -> Iterator[str]:
    """`langgraph dev` on a free port, from a copy of langgraph_app/ (it writes its state under its
    working directory); its base URL once `/ok` answers. Its output goes to work_dir/langgraph-dev.log."""
    app = work_dir / "langgraph_app"
    shutil.copytree(APP_DIR, app, dirs_exist_ok=True)
    port = free_port()
    log_path = work_dir / "langgraph-dev.log"
    command = [str(cli), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"]
    command += ["--config", "langgraph.json"]
    env = {**os.environ, **OFFLINE_ENV, "SIMULATOR_URL": simulator_url}
    env.pop("VIRTUAL_ENV", None)
    with log_path.open("wb") as log:
        # A session of its own: stopping it stops whatever it started, and only that.
        process = subprocess.Popen(
            command, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"`langgraph dev` exited ({process.returncode}); see {log_path}")
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"`langgraph dev` did not answer within {START_TIMEOUT_S:g} s; see {log_path}"
                )
            time.sleep(0.2)  # polling a process that tells nothing else when it is ready
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@asynccontextmanager
async def everloop_rig(
    endpoints: Endpoints | None, data_dir: Path, simulator_url: str
) -> AsyncIterator[Rig | None]:
    if endpoints is None:
        yield None
        return
    async with open_rig(endpoints, data_dir, simulator_url, {}) as rig:
        yield rig


async def bench(endpoints: Endpoints | None, data_dir: Path, args: argparse.Namespace) -> None:
    # One script for every side; graph.py keeps its own copy, as `langgraph dev` cannot import ours.
    assert lg_graph.SCRIPT == loop_latency.SCRIPT, (
        "langgraph_app/graph.py's SCRIPT differs from loop_latency's"
    )
    cli = dev_cli(args.langgraph_cli)
    figures, samples = Figures(), Samples()
    with running(create_simulator_app(), "/simulator/v1/models") as simulator:
        simulator_url = f"{simulator.url}/simulator/v1"
        async with AsyncExitStack() as stack:
            rig = await stack.enter_async_context(everloop_rig(endpoints, data_dir, simulator_url))
            saver = await stack.enter_async_context(
                AsyncSqliteSaver.from_conn_string(str(data_dir / "lg.sqlite"))
            )
            graph = lg_graph.build_graph(simulator_url, saver)
            dev_url = stack.enter_context(langgraph_dev(cli, simulator_url, data_dir))
            client = get_client(url=dev_url, api_key=None)
            print(
                f"langgraph dev at {dev_url}; {args.warmup} warm-up iterations, then {args.iterations}",
                flush=True,
            )
            for i in range(args.warmup + args.iterations):
                into = (Figures(), Samples()) if i < args.warmup else (figures, samples)
                if rig is not None:
                    # loop_latency's own iteration, a fresh session each time: its turn (a), then
                    # its bare workflow (b), each followed by its settling pause.
                    await rig.iteration(into[0], False)
                into[1].inprocess_ms.append(await inprocess_turn(graph, "async"))
                into[1].inprocess_sync_ms.append(await inprocess_turn(graph, "sync"))
                into[1].dev_ms.append(await dev_turn(client))
            server_timings(data_dir / "langgraph-dev.log", args.iterations, samples)
    report(figures, samples, args)


def report(figures: Figures, samples: Samples, args: argparse.Namespace) -> None:
    def row(label: str, values: list[float]) -> None:
        print(f"  {label:<62}{p50_p95(values)}")

    # Other work on the machine moves these figures: read them beside the load.
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{args.iterations} iterations, a fresh session / thread per turn; milliseconds      p50     p95")
    everloop = pct(figures.turn_ms, 50) if figures.turn_ms else args.everloop_ms
    if figures.turn_ms:
        row("(a)  Everloop: POST -> turn.completed", figures.turn_ms)
        row("     (loop_latency's bare workflow: its activities no-ops)", figures.bare_ms)
    elif everloop is not None:
        print(f"  {'(a)  Everloop: given (--everloop-ms)':<62}{everloop:7.1f}")
    row("(b)  LangGraph in-process, SQLite, durability=async (default)", samples.inprocess_ms)
    row("(b2) the same, durability=sync", samples.inprocess_sync_ms)
    row("(c)  langgraph dev: runs.wait (thread made before)", samples.dev_ms)
    if samples.dev_exec_ms:
        row("     of which, in its log: waiting in its run queue", samples.dev_queue_ms)
        row("                           executing the run", samples.dev_exec_ms)
    if everloop is None:
        return
    inprocess, inprocess_sync, dev = (
        pct(v, 50) for v in (samples.inprocess_ms, samples.inprocess_sync_ms, samples.dev_ms)
    )
    print(f"  p50(a) / p50(b)  = {everloop / inprocess:5.2f}   (target <= {TARGET_INPROCESS_RATIO})")
    print(f"  p50(a) / p50(b2) = {everloop / inprocess_sync:5.2f}")
    print(f"  p50(c) / p50(a)  = {dev / everloop:5.2f}   (target >= {TARGET_DEV_SPEEDUP:.0f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.langgraph_compare",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
    )
    parser.add_argument("--iterations", type=int, default=30, help="measured iterations (default 30)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="iterations run first and discarded (default 5)"
    )
    parser.add_argument(
        "--skip-everloop", action="store_true", help="LangGraph only: no embedded stack (with --everloop-ms)"
    )
    parser.add_argument(
        "--everloop-ms", type=float, help="with --skip-everloop: Everloop's p50 to compare with"
    )
    parser.add_argument(
        "--langgraph-cli",
        type=Path,
        help="a `langgraph` executable (default: .tools/langgraph's, made if missing)",
    )
    args = parser.parse_args(argv)
    configure_logging("WARNING", LogFormat.CONSOLE)
    # Imported here, after `core` (which keeps litellm from fetching its price table at import).
    import litellm

    # litellm prints a banner on each reply from the simulator (its model name has no provider prefix).
    litellm.suppress_debug_info = True
    if args.skip_everloop:
        with tempfile.TemporaryDirectory(prefix="everloop-bench-") as tmp:
            asyncio.run(bench(None, Path(tmp), args))
        return 0
    return run_on_fresh_stack(lambda endpoints, data_dir: bench(endpoints, data_dir, args))


if __name__ == "__main__":
    sys.exit(main())
