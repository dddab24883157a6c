"""`/v2/call` overhead: what the API adds to one model request (issue 15: target <= 10 ms).

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python -m tests.bench.v2_call [--iterations 100]
        [--warmup 10] [--profile]

One embedded stack (PostgreSQL without fsync, as the tests run it), the API as an `everloop api`
process of its own (tests/bench/trace_store.py `api_processes`: uvicorn, real HTTP, AUTH_MODE=full)
with its simulator on, and this process as the client, holding an `evr_` API key of a fresh account
that owns a simulator provider (no base_url: the API's own `/simulator/v1`) and an `echo` model.
Per iteration, in turn, after `--warmup` discarded iterations:
 (a) `litellm.acompletion` from here straight to that simulator, with the parameters the API uses
     (`ModelAccess.reaching`: `ModelAccess.params` plus `num_retries`/`timeout`), the prompt
     `v2_calls.messages` builds and the `response_format` (json_schema) it sends; not streamed;
 (b) `POST /v2/call` with an output_schema over HTTP (httpx, one keep-alive connection): echo mode
     answers a schema-valid value, so there is one model request, no repair;
 (c) the same without output_schema (a text answer);
 (d) (b)'s service, in this process: `v2_calls.prepare`, then `v2_calls.complete`, with
     `v2_calls._ask` (the model request) and `v2_calls.record` (the span write) timed from here by
     wrappers: the breakdown. Nothing in the product is timed or changed;
 (e) `GET /api/auth/me` with the same key: what any authenticated request costs (the HTTP floor).
`--profile` then runs (d) `--iterations` times more under cProfile and prints the top functions.
`--span-write` measures only the span write instead, in this process on the same fresh stack:
`traces.write_call` (one statement) against the five round trips it replaced (`five_trips`), in
alternation so that both meet the same load, for a root call and for a call under a parent.
The overhead is (b) - (a): the difference of their percentiles, and the percentiles of the paired
per-iteration differences. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import pstats
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import httpx
import litellm
import msgspec
from sqlalchemy import select

from core import bus
from core.db import Database
from core.db.auth import User
from core.db.models import LlmModel, LlmProvider
from core.db.traces import Span, Trace
from core.identity import Identity
from core.logging import configure_logging
from core.schemas.traces import SpanWrite
from core.schemas.v2_calls import CallRequest
from core.settings import LogFormat, load_settings
from everloop.stack import Endpoints
from services import model_calls, traces, v2_calls
from tests import factories
from tests.bench.loop_latency import pct
from tests.bench.stack import run_on_fresh_stack
from tests.bench.trace_store import account, api_processes

TARGET_OVERHEAD_MS = 10.0
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "city": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "city", "age"],
    "additionalProperties": False,
}
T = TypeVar("T")


def body(model: str, *, schema: bool) -> dict[str, Any]:
    return {
        "name": "bench_extract",
        "instructions": "Extract the person mentioned in the text.",
        "input": {"text": "Ada Lovelace, 36, lives in London."},
        "model": model,
        **({"output_schema": PERSON} if schema else {}),
    }


class Figures(msgspec.Struct):
    series: dict[str, list[float]] = msgspec.field(default_factory=lambda: defaultdict(list))

    def add(self, name: str, ms: float) -> None:
        self.series[name].append(ms)


def timed(figures: Figures, name: str, function: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """`function`, its time added to `figures` under `name` (for the in-process breakdown)."""

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        start = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            figures.add(name, (time.perf_counter() - start) * 1000)

    return wrapper


class Rig:
    def __init__(
        self,
        http: httpx.AsyncClient,
        db: Database,
        access: model_calls.ModelAccess,
        who: Identity,
        provider: LlmProvider,
        model: LlmModel,
        redis: Any,
    ) -> None:
        self.http, self.db, self.access, self.who = http, db, access, who
        self.provider, self.model, self.redis = provider, model, redis
        self.with_schema = body(str(model.id), schema=True)
        self.without_schema = body(str(model.id), schema=False)
        self.data = msgspec.convert(self.with_schema, CallRequest)

    async def direct(self, figures: Figures) -> None:
        """(a): what `v2_calls._ask` sends, from here."""
        prompt = v2_calls.messages(self.data, structured=True)
        extra = {"num_retries": 0, "timeout": v2_calls.TIMEOUT_S}
        start = time.perf_counter()
        async with self.access.reaching(self.provider, self.model, extra) as (params, _key):
            params["response_format"] = v2_calls.response_format(self.data)
            response = await litellm.acompletion(messages=prompt, **params)
        figures.add("a", (time.perf_counter() - start) * 1000)
        text = response.choices[0].message.content or ""
        if set(msgspec.json.decode(text, type=dict[str, Any])) != {"name", "city", "age"}:
            raise RuntimeError(f"the simulator's answer is not the schema's: {text}")

    async def over_http(self, figures: Figures, name: str, payload: dict[str, Any]) -> None:
        """(b) and (c)."""
        start = time.perf_counter()
        response = await self.http.post("/v2/call", json=payload)
        figures.add(name, (time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"POST /v2/call answered {response.status_code}: {response.text[:500]}")
        answer = response.json()
        if "output_schema" in payload and not isinstance(answer.get("json_payload"), dict):
            raise RuntimeError(f"not a structured answer: {answer}")

    async def in_process(self, figures: Figures) -> None:
        """(d): the route's two service calls, the model request and the span write timed apart."""
        start = time.perf_counter()
        async with self.db.session() as session:
            call = await v2_calls.prepare(session, self.who, self.access.settings, self.data)
            figures.add("d prepare", (time.perf_counter() - start) * 1000)
            with (
                mock.patch.object(v2_calls, "_ask", timed(figures, "d model request", v2_calls._ask)),
                mock.patch.object(v2_calls, "record", timed(figures, "d span write", v2_calls.record)),
            ):
                await v2_calls.complete(session, self.redis, self.who, self.access, call)
        figures.add("d", (time.perf_counter() - start) * 1000)

    async def iteration(self, figures: Figures) -> None:
        await self.direct(figures)
        await self.over_http(figures, "b", self.with_schema)
        await self.over_http(figures, "c", self.without_schema)
        await self.in_process(figures)
        start = time.perf_counter()
        me = await self.http.get("/api/auth/me")
        figures.add("e", (time.perf_counter() - start) * 1000)
        me.raise_for_status()


def stats(values: list[float]) -> str:
    return f"{pct(values, 50):7.2f} {pct(values, 95):7.2f} {statistics.fmean(values):7.2f}"


def report(figures: Figures, iterations: int) -> None:
    s = figures.series
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{iterations} iterations, one request at a time; milliseconds              p50     p95    mean")
    print(f"  (a) litellm.acompletion -> simulator (json_schema)            {stats(s['a'])}")
    print(f"  (b) POST /v2/call with output_schema (HTTP, API key)          {stats(s['b'])}")
    print(f"  (c) POST /v2/call without output_schema                       {stats(s['c'])}")
    print(f"  (d) (b)'s service in this process: prepare + complete         {stats(s['d'])}")
    print(f"  (e) GET /api/auth/me (the floor of an authenticated request)  {stats(s['e'])}")
    paired = [b - a for a, b in zip(s["a"], s["b"], strict=True)]
    paired_c = [c - a for a, c in zip(s["a"], s["c"], strict=True)]
    over50 = pct(s["b"], 50) - pct(s["a"], 50)
    over95 = pct(s["b"], 95) - pct(s["a"], 95)
    print(
        f"\noverhead (b) - (a): p50 {over50:.2f} ms, p95 {over95:.2f} ms"
        f" (target <= {TARGET_OVERHEAD_MS:.0f} ms);"
        f" paired per iteration: p50 {pct(paired, 50):.2f}, p95 {pct(paired, 95):.2f}"
    )
    print(f"overhead (c) - (a), paired: p50 {pct(paired_c, 50):.2f}, p95 {pct(paired_c, 95):.2f}")
    prepare, model, write = (
        statistics.median(s[f"d {k}"]) for k in ("prepare", "model request", "span write")
    )
    d = statistics.median(s["d"])
    rest = d - prepare - model - write
    outside = pct(s["b"], 50) - pct(s["d"], 50)
    model_over = model - pct(s["a"], 50)
    print(
        f"breakdown of (b), medians: prepare (schema check, model lookup) {prepare:.2f}"
        f" | model request {model:.2f} (= (a) {model_over:+.2f}) | validate and the rest {rest:.2f}"
        f" | span write + commit {write:.2f} | HTTP, auth, session, JSON (b - d) {outside:.2f}"
    )


async def profile(rig: Rig, iterations: int) -> None:
    """(d) again under cProfile: where the service's own time goes (the event loop's waits for
    PostgreSQL and the simulator show as the awaiting functions' cumulative time)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(iterations):
        await rig.in_process(Figures())
    profiler.disable()
    print(f"\n(d) under cProfile, {iterations} calls, by cumulative time (inflated by the profiler)")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(
        r"services|core|sqlalchemy/ext|jsonschema", 30
    )


def call_spans(span_id: str, parent: str | None) -> list[SpanWrite]:
    """A structured call's span and its one model request, as `v2_calls.record` writes them."""
    now = datetime.now(UTC)
    usage: dict[str, Any] = {
        "model": "openai/m",
        "input_tokens": 40,
        "output_tokens": 12,
        "cost": Decimal("0.0001"),
    }
    return [
        SpanWrite(
            span_id=span_id,
            parent_span_id=parent,
            name="bench_extract",
            kind="call",
            status="ok",
            input={"text": "Ada Lovelace, 36, lives in London."},
            output={"name": "Ada Lovelace", "city": "London", "age": 36},
            metadata={"tags": {}, "cached": False, "models": ["m"], "output_schema": PERSON},
            start_time=now,
            end_time=now,
            **usage,
        ),
        SpanWrite(
            span_id=f"{span_id}.0",
            parent_span_id=span_id,
            name="bench_extract (model request 1)",
            kind="llm",
            status="ok",
            output='{"name": "Ada Lovelace", "city": "London", "age": 36}',
            start_time=now,
            end_time=now,
            **usage,
        ),
    ]


async def five_trips(session: Any, owner: uuid.UUID, parent: str | None) -> str:
    """The span write before `traces.write_call` (up to 8910a38): the parent's trace, the default
    project, the trace, the spans, the trace's totals, then the commit."""
    span_id = str(uuid.uuid4())
    trace_id = None
    if parent:
        trace_id = await session.scalar(
            select(Trace.trace_id)
            .join(Span, Span.trace_pk == Trace.id)
            .where(Span.owner_id == owner, Span.span_id == parent)
            .order_by(Span.updated_at.desc())
            .limit(1)
        )
    project = await traces.default_project(session, owner)
    fields = {} if trace_id else {"name": "bench_extract"}
    trace_pk = await traces.ensure_trace(session, owner, project, trace_id or str(uuid.uuid4()), **fields)
    await traces.upsert_spans(session, owner, trace_pk, call_spans(span_id, parent))
    await session.commit()
    return span_id


async def one_statement(session: Any, owner: uuid.UUID, parent: str | None) -> str:
    span_id = str(uuid.uuid4())
    await traces.write_call(
        session, owner, call_spans(span_id, parent), name="bench_extract", parent_span_id=parent
    )
    await session.commit()
    return span_id


async def span_write(endpoints: Endpoints, args: argparse.Namespace) -> None:
    db = Database(endpoints.database_url)
    try:
        async with db.session() as session:
            user = User(email=f"{uuid.uuid4().hex[:12]}@example.com")
            session.add(user)
            await session.commit()
            owner = user.id
        series: dict[str, list[float]] = defaultdict(list)
        writers = [("five round trips", five_trips), ("one statement", one_statement)]
        root: str | None = None
        for i in range(args.warmup + args.iterations):
            for name, write in writers if i % 2 else writers[::-1]:
                for parent in (None, root):
                    async with db.session() as session:
                        await session.execute(select(1))  # a request's session has begun (prepare)
                        start = time.perf_counter()
                        span_id = await write(session, owner, parent)
                        ms = (time.perf_counter() - start) * 1000
                    root = root or span_id
                    if i >= args.warmup:
                        series[f"{name}{', under a parent' if parent else ''}"].append(ms)
        print(
            f"\nload average {os.getloadavg()[0]:.1f}; the span write with its commit, {args.iterations} each"
        )
        print(f"{'milliseconds':42}     p50     p95    mean")
        for name, values in series.items():
            print(f"  {name:40} {stats(values)}")
    finally:
        await db.dispose()


async def bench(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    if args.span_write:
        await span_write(endpoints, args)
        return
    # The API process serves its own simulator (`api_processes` passes this environment on).
    os.environ["EVERLOOP_SIMULATOR"] = "true"
    with api_processes(endpoints, data_dir, 1) as urls:
        url = urls[0]
        print(f"API: `everloop api` at {url}", flush=True)
        async with httpx.AsyncClient(base_url=url, timeout=60) as anon:
            who = await account(anon, "v2call")
        key = {"Authorization": f"Bearer {who.api_key}"}
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=key) as http:
            provider = await factories.provider(http)  # no base_url: the API's own simulator
            model = await factories.model(http, provider["id"])  # settings {}: echo
            port = url.rsplit(":", 1)[1]
            settings = load_settings(
                {**endpoints.as_env(), "EVERLOOP_DATA_DIR": str(data_dir), "EVERLOOP_PORT": port}
            )
            access = model_calls.ModelAccess(settings, None)
            assert access.simulator_url == f"{url}/simulator/v1", access.simulator_url
            db = Database(endpoints.database_url)
            redis = bus.connect(endpoints.redis_url)
            try:
                async with db.session() as session:
                    provider_row = await session.get(LlmProvider, uuid.UUID(provider["id"]))
                    model_row = await session.get(LlmModel, uuid.UUID(model["id"]))
                assert provider_row is not None and model_row is not None
                identity = Identity(
                    user_id=uuid.UUID(who.user_id), email="bench@example.com", role="user", method="api_key"
                )
                rig = Rig(http, db, access, identity, provider_row, model_row, redis)
                for _ in range(args.warmup):
                    await rig.iteration(Figures())
                figures = Figures()
                for _ in range(args.iterations):
                    await rig.iteration(figures)
                report(figures, args.iterations)
                if args.profile:
                    await profile(rig, args.iterations)
            finally:
                await redis.aclose()
                await db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.v2_call", description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=100, help="measured iterations (default 100)")
    parser.add_argument(
        "--warmup", type=int, default=10, help="iterations run first and discarded (default 10)"
    )
    parser.add_argument("--profile", action="store_true", help="then (d) under cProfile: the top functions")
    parser.add_argument(
        "--span-write",
        action="store_true",
        help="only the span write: one statement against five round trips",
    )
    args = parser.parse_args(argv)
    configure_logging("WARNING", LogFormat.CONSOLE)
    return run_on_fresh_stack(lambda endpoints, data_dir: bench(endpoints, data_dir, args))


if __name__ == "__main__":
    sys.exit(main())
