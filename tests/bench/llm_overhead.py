"""litellm's own cost per call: one model request through litellm against the same request over raw
HTTP, to the same simulator (issue 18: target <= 3 ms).

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python -m tests.bench.llm_overhead [--iterations 300]
        [--warmup 30] [--model echo] [--words 0] [--profile N]

The simulator runs in a process of its own (`run_simulator`, as `everloop simulator`; no delays) on a
free port, so that its work does not share this process's interpreter. In this process, one event
loop, one call at a time, per iteration in turn (paired, so that all meet the same machine load):
 (a) streamed, raw: `httpx.AsyncClient` (one keep-alive connection) POSTs the body litellm sends and
     reads the SSE lines, decoding each chunk's JSON, joining the text, keeping the usage;
 (b) streamed, the worker's call: activities/provider.py's `stream_call` (litellm.acompletion with
     `stream_options={"include_usage": True}`, `num_retries=0`, `timeout=300`, iterating the chunks)
     with `ModelAccess.params`'s parameters through `model_calls.priced`, then `Reply.of_stream`
     (text, tool calls, tokens, cost): what a `reason` step runs, without Temporal and Redis;
 (b0) streamed, the worker's call as it was before issue 18: the same litellm call, then
     `litellm.stream_chunk_builder` and `Reply.of` with litellm's `cost_per_token` uncached;
 (c) not streamed, raw: the same POST without `stream`, its JSON decoded;
 (d) not streamed, litellm: `litellm.acompletion` as `/v2/call` sends it (services/v2_calls.py
     `_ask`: the parameters, `num_retries=0`), then `Reply.of`.
litellm's cost is (b) - (a) and (d) - (c): the percentiles of the paired per-iteration differences,
in wall time and in this process's CPU time (time.process_time over the call and 2 ms after it, so
litellm's logging task, which runs once the call has returned, is counted; the raw side gets the
same window). The machine is shared: the load average is printed with the figures, and CPU time is
the steadier of the two under load. `--model` names the simulator's model (`echo`: litellm has no
price for it; `gpt-4o-mini`: one it prices, the simulator answers any name); `--words N` makes the
user message N words long (the echo answers one chunk per word: the cost per chunk). `--profile N`
then runs N calls of (b) and of (d) under cProfile and prints the top functions by own and by
cumulative time. `--first-call K` then starts K fresh processes of each kind and times (b) as their
first litellm call: cold, and after `services.litellm_setup.warm_up()` (what a worker does at start).
Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx

# `core` first: litellm then uses its bundled price table (no fetch at import).
import core  # noqa: F401
from core.db.models import LlmModel, LlmProvider
from everloop.stack.process import free_port
from tests.bench.loop_latency import pct

TARGET_MS = 3.0
START_TIMEOUT_S = 60.0
SETTLE_S = 0.002
SYSTEM = {"role": "system", "content": "You are a helpful assistant. Use the tools when they help."}
QUESTION = "What is 1 + 2? Answer in one short sentence, please."
# What a reason step sends, near enough: a system prompt, a user message and one tool on offer.
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Adds two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    }
]
NAMES = {
    "a": "(a) raw HTTP, streamed",
    "b": "(b) litellm, streamed: the worker's call",
    "b0": "(b0) the same, as before issue 18",
    "c": "(c) raw HTTP, not streamed",
    "d": "(d) litellm, not streamed (/v2/call)",
}
PAIRS = (("a", "b", "streamed (b)-(a)"), ("a", "b0", "before (b0)-(a)"), ("c", "d", "not streamed (d)-(c)"))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"load average {os.getloadavg()}"


def start_simulator() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from api.simulator import run_simulator; run_simulator('127.0.0.1', {port})",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/simulator/v1"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the simulator exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the simulator did not start")


async def no_delta(delta: str) -> None:
    """The worker publishes each delta to Redis; here nothing is published."""


class Rig:
    def __init__(self, simulator_url: str, model_id: str, words: int) -> None:
        import litellm

        from activities import provider
        from services import llm, model_calls

        self.litellm, self.provider, self.model_calls = litellm, provider, model_calls
        question = " ".join(["word"] * words) if words else QUESTION
        self.messages: list[dict[str, Any]] = [SYSTEM, {"role": "user", "content": question}]
        # An admin's simulator provider (no owner: no pinned client), as tests and benches set one up.
        self.db_provider = LlmProvider(
            name="sim", provider_type="simulator", base_url=simulator_url, settings={}
        )
        self.db_model = LlmModel(
            model_id=model_id, display_name=model_id, settings={}, provider=self.db_provider
        )
        # ModelAccess.params's parameters (it only adds the API's own simulator URL as a default).
        self.params = llm.completion_params(self.db_provider, self.db_model, None, simulator_url)
        self.url = f"{simulator_url}/chat/completions"
        # The body litellm sends (openai/ stripped, extra_body merged), for the raw requests.
        self.body: dict[str, Any] = {
            "model": model_id,
            "messages": self.messages,
            "tools": TOOLS,
            **self.params["extra_body"],
        }
        self.headers = {"Authorization": f"Bearer {self.params['api_key']}"}
        self.http = httpx.AsyncClient(timeout=30)

    async def raw_stream(self) -> None:
        body = {**self.body, "stream": True, "stream_options": {"include_usage": True}}
        text, usage = [], None
        async with self.http.stream("POST", self.url, json=body, headers=self.headers) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                usage = chunk.get("usage") or usage
                if chunk["choices"] and (delta := chunk["choices"][0]["delta"].get("content")):
                    text.append(delta)
        if not text or usage is None:
            raise RuntimeError("the raw stream had no text or no usage")

    async def worker_stream(self) -> None:
        """(b): activities/provider.py's call and reply, as `Provider.complete` makes them."""
        params = self.model_calls.priced(self.params)
        chunks = await self.provider.stream_call(params, self.messages, TOOLS, None, no_delta)
        reply = self.model_calls.Reply.of_stream(chunks, self.messages, params["model"], 0, TOOLS)
        self.check(reply)

    async def worker_stream_before(self) -> None:
        """(b0): the worker's call before issue 18 (activities/provider.py then), for comparison."""
        chunks = await self.provider.stream_call(self.params, self.messages, TOOLS, None, no_delta)
        response: Any = self.litellm.stream_chunk_builder(chunks, messages=self.messages)
        usage = response.usage
        try:  # model_calls.cost_of then: litellm's search, every call
            prompt, completion = self.litellm.cost_per_token(
                model=self.params["model"],
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )
            cost = Decimal(str(prompt + completion))
        except Exception:
            cost = Decimal(0)
        reply = self.model_calls.Reply.of(response, self.params["model"], 0, TOOLS)
        self.check(reply)
        if reply.cost != cost:
            raise RuntimeError(f"cost {reply.cost} != litellm's {cost}")

    async def raw_plain(self) -> None:
        response = await self.http.post(self.url, json=self.body, headers=self.headers)
        response.raise_for_status()
        if not response.json()["choices"][0]["message"]["content"]:
            raise RuntimeError("the raw reply has no text")

    async def litellm_plain(self) -> None:
        response = await self.litellm.acompletion(
            **self.params, messages=self.messages, tools=TOOLS, num_retries=0
        )
        self.check(self.model_calls.Reply.of(response, self.params["model"], 0, TOOLS))

    @staticmethod
    def check(reply: Any) -> None:
        if not reply.text or not reply.input_tokens or not reply.output_tokens:
            raise RuntimeError(f"litellm's reply lacks text or usage: {reply}")


Series = dict[str, list[float]]


async def measure(rig: Rig, iterations: int, warmup: int) -> tuple[Series, Series]:
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("a", rig.raw_stream),
        ("b", rig.worker_stream),
        ("b0", rig.worker_stream_before),
        ("c", rig.raw_plain),
        ("d", rig.litellm_plain),
    ]
    wall: Series = defaultdict(list)
    cpu: Series = defaultdict(list)
    for i in range(warmup + iterations):
        # Alternate the order, so that no step always follows the same one.
        for name, step in steps if i % 2 == 0 else steps[::-1]:
            cpu_start, start = time.process_time(), time.perf_counter()
            await step()
            elapsed = time.perf_counter() - start
            await asyncio.sleep(SETTLE_S)  # litellm's logging task runs once the call has returned
            if i >= warmup:
                wall[name].append(elapsed * 1000)
                cpu[name].append((time.process_time() - cpu_start) * 1000)
    return wall, cpu


def report(model: str, words: int, wall: Series, cpu: Series) -> None:
    print(f"\nmodel {model!r}, {'the default question' if not words else f'{words} words'}; {uptime()}")
    print(f"{len(wall['a'])} iterations; milliseconds               wall p50  wall p95  cpu p50  cpu mean")
    for key, name in NAMES.items():
        print(
            f"  {name:42} {pct(wall[key], 50):8.2f}  {pct(wall[key], 95):8.2f}"
            f"  {pct(cpu[key], 50):7.2f}  {statistics.fmean(cpu[key]):8.2f}"
        )
    print(f"litellm's cost per call, paired per iteration (target <= {TARGET_MS:g} ms):")
    for raw, lite, what in PAIRS:
        paired = [b - a for a, b in zip(wall[raw], wall[lite], strict=True)]
        paired_cpu = [b - a for a, b in zip(cpu[raw], cpu[lite], strict=True)]
        print(
            f"  {what:22} wall p50 {pct(paired, 50):6.2f}  p95 {pct(paired, 95):6.2f}"
            f"   cpu p50 {pct(paired_cpu, 50):6.2f}  mean {statistics.fmean(paired_cpu):6.2f}"
        )


async def profile(rig: Rig, calls: int) -> None:
    for name, step in (("streamed (b)", rig.worker_stream), ("not streamed (d)", rig.litellm_plain)):
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            await step()
            await asyncio.sleep(SETTLE_S)
        profiler.disable()
        for order in ("tottime", "cumulative"):
            print(f"\ncProfile, {name}, {calls} calls, by {order} (totals over all calls):")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats(order).print_stats(30)


async def first_call(url: str, model: str, warm: bool) -> None:
    """In a fresh process (`--child`): (b) as the process's first litellm call, after the worker's
    warm-up or not; prints the milliseconds."""
    from services import litellm_setup

    rig = Rig(url, model, 0)
    if warm:
        await litellm_setup.warm_up()
    start = time.perf_counter()
    await rig.worker_stream()
    print(f"{(time.perf_counter() - start) * 1000:.1f}")
    await rig.http.aclose()


def first_calls(url: str, model: str, processes: int) -> None:
    figures: Series = defaultdict(list)
    for _ in range(processes):
        for kind in ("cold", "warm"):
            command = [sys.executable, "-m", "tests.bench.llm_overhead", "--child", url, "--model", model]
            answer = subprocess.run(
                [*command, *(["--warm"] if kind == "warm" else [])], capture_output=True, text=True
            )
            if answer.returncode != 0:
                raise RuntimeError(f"the {kind} child failed: {answer.stderr[-2000:]}")
            figures[kind].append(float(answer.stdout.strip().splitlines()[-1]))
    print(f"\na fresh process's first streamed call (b), {processes} processes each; {uptime()}")
    for kind, what in (("cold", "cold"), ("warm", "after litellm_setup.warm_up()")):
        print(f"  {what:32} p50 {statistics.median(figures[kind]):7.1f} ms  max {max(figures[kind]):7.1f} ms")


async def run(args: argparse.Namespace) -> None:
    if args.child:
        await first_call(args.child, args.model, args.warm)
        return
    process, url = start_simulator()
    rig = Rig(url, args.model, args.words)
    try:
        wall, cpu = await measure(rig, args.iterations, args.warmup)
        report(args.model, args.words, wall, cpu)
        if args.profile:
            await profile(rig, args.profile)
        if args.first_call:
            first_calls(url, args.model, args.first_call)
    finally:
        await rig.http.aclose()
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--model", default="echo", help="the simulator's model name (default echo)")
    parser.add_argument("--words", type=int, default=0, help="a user message of N words (N chunks back)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="then profile N calls of each")
    parser.add_argument(
        "--first-call", type=int, default=0, metavar="K", help="then K cold and K warm processes"
    )
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
