"""Trace store: ingestion through HTTP, then the query and analytics routes over the filled store.

    .venv/bin/python -m tests.bench.trace_store [--spans 1000000] [--traces 100000] [--requests 50]
        [--clients 8] [--api-processes 1] [--http-traces 10000] [--wide-batches 200] [--durable]
        [--data-dir DIR] [--explain-ms N]

One embedded stack (PostgreSQL without fsync, as the tests run it; `--durable` for fsync on), the API
as `everloop api` processes of their own (uvicorn, real HTTP, AUTH_MODE=full), and this process as
the client: it registers an account, makes an API key (`evr_`) and a project with its key (`vgl_`).

1. Fill: `--traces` traces of `--spans / --traces` spans each (an `agent` root span, then `llm` steps
   with model, provider, tokens and cost, several models, and `tool`/`retrieval` steps; about 6% of
   traces fail in a tool, 1% never finish), started over the last 30 days, sent with the project key
   as `POST /v1/traces`, one trace per request (the route takes one trace per batch), `--clients`
   requests in flight. Printed: spans/s and per-request latency. Traces past `--http-traces` are
   written by SQL instead (COPY, then the store's aggregates in one UPDATE; said in the output):
   a filler for when HTTP would take too long, not a measurement. Then, because
   001's batch has no field for them, one SQL UPDATE gives the traces 40 users and 20,000
   sessions, and VACUUM ANALYZE leaves the tables as autovacuum would.
2. Batches of 100 spans: `--wide-batches` traces of 100 spans each, in a second account (the first
   keeps exactly its traces), to show what a request carrying 100 spans costs.
3. Each query route, `--requests` times one after another (after a warm-up), p50 and p95 next to the
   issue's target: list routes 50 ms, analytics 200 ms. Figures only: nothing here passes or fails.

`--data-dir DIR` keeps the stack's data there; run again with the same DIR, it skips the fill and
measures the queries on the store it finds (to try an index or a query change on the same data).
`--explain-ms N` logs the plan of every statement the API sends that takes over N ms to PostgreSQL's
log (auto_explain, with ANALYZE: the figures of such a run are inflated by the instrumentation).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec

from core.logging import configure_logging
from core.migrate import upgrade
from core.schemas.traces import CONTAINER_KINDS
from core.settings import LogFormat, load_settings
from everloop.stack import EmbeddedStack, Endpoints
from everloop.stack.process import ManagedProcess, free_port, wait_until
from tests.bench.loop_latency import pct

TARGET_LIST_MS = 50.0
TARGET_ANALYTICS_MS = 200.0
TARGET_INGEST_SPANS_S = 10_000.0
# Through HTTP by default: 100,000 spans. All 100,000 traces took ~3 hours at the 10 requests a
# second measured on 2026-11-29 (docs/benchmarks.md); `--http-traces 100000` sends them all.
HTTP_TRACES = 10_000
WARMUP = 3
DAYS = 30
USERS = 40
SESSIONS = 20_000
FILLED_MARK = "trace-store-filled.json"  # in --data-dir: the accounts and keys of a finished fill
JWT_SECRET = "trace-store-bench-" + "x" * 32
# (model, provider, USD per 1M input tokens, per 1M output tokens, weight among traces)
MODELS = [
    ("gpt-4o", "openai", 2.5, 10.0, 30),
    ("gpt-4o-mini", "openai", 0.15, 0.6, 25),
    ("claude-sonnet-4", "anthropic", 3.0, 15.0, 20),
    ("claude-3-5-haiku", "anthropic", 0.8, 4.0, 12),
    ("gemini-2.0-flash", "google", 0.1, 0.4, 8),
    ("llama-3.3-70b", "groq", 0.59, 0.79, 5),
]
AGENTS = ["support-agent", "research-agent", "code-review", "sales-assistant", "data-analyst", "triage-bot"]
TOOLS = ["web_search", "read_file", "sql_query", "send_email", "calculator", "http_get"]
PROMPT = "You are a helpful assistant. Answer briefly and cite the tool results you were given."
QUESTION = "Customer {n} asks why invoice #{n} was charged twice this month and how to get a refund."
ANSWER = "I checked the billing history of account {n}: the second charge was a pre-authorisation."


# ------------------------------------------------------------------------------------------- data


def trace_spans(rng: random.Random, n: int, spans: int, now: datetime) -> dict[str, Any]:
    """Trace `n`'s batch: a root `agent` span, then alternately `llm` and `tool` steps (every
    fourth tool a `retrieval`), started within the last DAYS days."""
    trace_id = f"bench-{n:07d}"
    model, provider, p_in, p_out, _ = rng.choices(MODELS, weights=[m[4] for m in MODELS])[0]
    second = rng.choice(MODELS) if rng.random() < 0.25 else None  # one step on another model
    fails = rng.random() < 0.06
    running = not fails and rng.random() < 0.01
    start = now - timedelta(seconds=rng.uniform(120, DAYS * 86400))
    at = start + timedelta(milliseconds=5)
    steps: list[dict[str, Any]] = []
    steps_wanted = spans - 1
    failing_step = rng.randrange(1, steps_wanted, 2) if fails and steps_wanted > 1 else -1
    for i in range(steps_wanted):
        span: dict[str, Any] = {
            "trace_id": trace_id,
            "span_id": f"s{i}",
            "parent_span_id": "root",
            "status": "unset" if running else "ok",
            "start_time": at,
        }
        if i % 2 == 0:
            m = second if second is not None and i == steps_wanted - 1 else (model, provider, p_in, p_out, 0)
            tokens_in, tokens_out = rng.randint(200, 4000), rng.randint(20, 800)
            took = rng.randint(300, 3000)
            span |= {
                "name": "chat",
                "kind": "llm",
                "model": m[0],
                "provider": m[1],
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "cost": round((tokens_in * m[2] + tokens_out * m[3]) / 1e6, 8),
                "input": {
                    "messages": [
                        {"role": "system", "content": PROMPT},
                        {"role": "user", "content": QUESTION.format(n=n)},
                    ]
                },
                "output": {"content": ANSWER.format(n=n)},
                "metadata": {"iteration": i // 2},
            }
        else:
            tool = rng.choice(TOOLS)
            took = rng.randint(10, 800)
            span |= {
                "name": tool,
                "kind": "retrieval" if i % 8 == 7 else "tool",
                "input": {"name": tool, "arguments": {"query": f"invoice {n}"}},
                "output": {"result": f"{rng.randint(1, 9)} rows for invoice {n}"},
            }
            if i == failing_step:
                span |= {"status": "error", "error": f"{tool}: timed out after 30 s", "output": None}
        if not running:
            span["end_time"] = at + timedelta(milliseconds=took)
        at += timedelta(milliseconds=took + 2)
        steps.append(span)
    root: dict[str, Any] = {
        "trace_id": trace_id,
        "span_id": "root",
        "name": "agent",
        "kind": "agent",
        "status": "unset" if running else ("error" if fails else "ok"),
        "start_time": start,
        "input": {"content": QUESTION.format(n=n)},
        "metadata": {"agent": "bench"},
    }
    if not running:
        root["end_time"] = at
        root["output"] = {"content": ANSWER.format(n=n)}
    return {"trace_name": rng.choice(AGENTS), "spans": [root, *steps]}


def batches(count: int, spans: int, seed: int, first: int = 0) -> Iterator[bytes]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    for n in range(first, first + count):
        yield msgspec.json.encode(trace_spans(rng, n, spans, now))


# ------------------------------------------------------------------------------------------ the API


@contextmanager
def api_processes(endpoints: Endpoints, data_dir: Path, count: int) -> Iterator[list[str]]:
    """`everloop api` processes (uvicorn, as deployed), each on a port of its own."""
    everloop = str(Path(sys.executable).with_name("everloop"))
    started: list[ManagedProcess] = []
    urls: list[str] = []
    try:
        for i in range(count):
            port = free_port()
            env = {
                **os.environ,
                **endpoints.as_env(),
                "EVERLOOP_DATA_DIR": str(data_dir),
                "EVERLOOP_PORT": str(port),
                "AUTH_MODE": "full",
                "AUTH_JWT_SECRET": JWT_SECRET,
                "LOG_LEVEL": "WARNING",
            }
            process = ManagedProcess(
                f"api-{i}", [everloop, "api"], log_path=data_dir / "logs" / f"api-{i}.log", env=env
            )
            process.start()
            started.append(process)
            url = f"http://127.0.0.1:{port}"
            wait_until(f"everloop api {i}", functools.partial(_healthy, url), timeout=60, process=process)
            urls.append(url)
        yield urls
    finally:
        for process in started:
            process.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Account(msgspec.Struct, kw_only=True):
    user_id: str
    api_key: str  # evr_: the account's routes (queries, analytics)
    project_id: str
    project_key: str  # vgl_: what an ingesting app holds


async def account(http: httpx.AsyncClient, name: str) -> Account:
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    registered = await http.post("/api/auth/register", json={"email": email, "password": "long enough"})
    registered.raise_for_status()
    bearer = {"Authorization": f"Bearer {registered.json()['access_token']}"}
    me = await http.get("/api/auth/me", headers=bearer)
    me.raise_for_status()
    key = await http.post("/api/auth/api-keys", json={"name": "bench"}, headers=bearer)
    key.raise_for_status()
    evr = {"Authorization": f"Bearer {key.json()['key']}"}
    project = await http.post("/v1/projects", json={"name": f"{name}-app"}, headers=evr)
    project.raise_for_status()
    return Account(
        user_id=me.json()["id"],
        api_key=key.json()["key"],
        project_id=project.json()["id"],
        project_key=project.json()["api_key"],
    )


# ------------------------------------------------------------------------------------------ ingest


@dataclass
class Ingested:
    spans: int = 0
    requests: int = 0
    seconds: float = 0.0
    request_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.spans / self.seconds if self.seconds else 0.0


async def ingest_http(
    urls: list[str], key: str, bodies: Iterator[bytes], spans_each: int, total: int, clients: int
) -> Ingested:
    """POSTs every body, `clients` at a time (each client on one API process, round robin)."""
    figures = Ingested()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    report_every = max(1, total // 10)

    async def client(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as http:
            for body in bodies:  # shared: each body is taken by one client
                sent = time.perf_counter()
                response = await http.post("/v1/traces", content=body)
                figures.request_ms.append((time.perf_counter() - sent) * 1000)
                if response.status_code != 201:
                    raise RuntimeError(f"POST /v1/traces answered {response.status_code}: {response.text}")
                figures.requests += 1
                figures.spans += spans_each
                if figures.requests % report_every == 0:
                    elapsed = time.perf_counter() - start
                    print(
                        f"  {figures.requests:>7} / {total} requests, {figures.spans / elapsed:8.0f} spans/s",
                        flush=True,
                    )

    start = time.perf_counter()
    await asyncio.gather(*(client(urls[i % len(urls)]) for i in range(clients)))
    figures.seconds = time.perf_counter() - start
    return figures


SPAN_COLUMNS = [
    "id", "owner_id", "trace_pk", "span_id", "parent_span_id", "name", "kind", "status", "input",
    "output", "error", "metadata", "start_time", "end_time", "model", "provider", "input_tokens",
    "output_tokens", "cost",
]  # fmt: skip
TRACE_COLUMNS = ["id", "owner_id", "project_id", "trace_id", "name", "user_id"]
# The store's aggregates and 001's derived status, as upsert_spans and ingest compute them per trace.
AGGREGATE = """
    UPDATE traces SET
        started_at = a.started, ended_at = a.ended,
        duration_ms = floor(extract(epoch FROM a.ended - a.started) * 1000),
        total_cost = a.cost, input_tokens = a.input_tokens, output_tokens = a.output_tokens,
        span_count = a.spans, step_count = a.steps, error_count = a.errors, models_used = a.models,
        status = CASE WHEN a.errors > 0 THEN 'error' WHEN a.oks > 0 THEN 'ok' ELSE traces.status END
    FROM (
        SELECT trace_pk, min(start_time) AS started, max(coalesce(end_time, start_time)) AS ended,
               coalesce(sum(cost), 0) AS cost, coalesce(sum(input_tokens), 0) AS input_tokens,
               coalesce(sum(output_tokens), 0) AS output_tokens, count(*) AS spans,
               count(*) FILTER (WHERE kind <> ALL($2::text[])) AS steps,
               count(*) FILTER (WHERE status = 'error') AS errors,
               count(*) FILTER (WHERE status = 'ok') AS oks,
               coalesce(jsonb_agg(DISTINCT model ORDER BY model) FILTER (WHERE model IS NOT NULL), '[]')
                   AS models
        FROM spans WHERE owner_id = $1 GROUP BY trace_pk
    ) AS a
    WHERE traces.id = a.trace_pk AND traces.span_count = 0
"""


def _json(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


async def fill_sql(database_url: str, owner: str, project: str, bodies: Iterator[bytes]) -> Ingested:
    """The rest of the fill without the API: the same traces written with COPY, then the traces'
    aggregates in one UPDATE (the store's own formulas). A filler, not a measurement."""
    figures = Ingested()
    owner_id, project_id = uuid.UUID(owner), uuid.UUID(project)
    start = time.perf_counter()
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        # No foreign-key triggers for these rows (their owner, project and traces exist): row-by-row
        # checks would make the filler as slow as what it replaces.
        await conn.execute("SET session_replication_role = replica")
        while True:
            traces: list[tuple[Any, ...]] = []
            spans: list[tuple[Any, ...]] = []
            for body in _take(bodies, 2000):
                batch = msgspec.json.decode(body)
                trace_pk = uuid.uuid4()
                trace_id = batch["spans"][0]["trace_id"]
                traces.append((trace_pk, owner_id, project_id, trace_id, batch["trace_name"], owner))
                for span in batch["spans"]:
                    spans.append(
                        (
                            uuid.uuid4(), owner_id, trace_pk, span["span_id"], span.get("parent_span_id"),
                            span["name"], span["kind"], span["status"], _json(span.get("input")),
                            _json(span.get("output")), span.get("error"), _json(span.get("metadata", {})),
                            _time(span["start_time"]), _time(span.get("end_time")), span.get("model"),
                            span.get("provider"), span.get("input_tokens"), span.get("output_tokens"),
                            Decimal(str(span["cost"])) if "cost" in span else None,
                        )
                    )  # fmt: skip
            if not traces:
                break
            await conn.copy_records_to_table("traces", records=traces, columns=TRACE_COLUMNS)
            await conn.copy_records_to_table("spans", records=spans, columns=SPAN_COLUMNS)
            figures.requests += len(traces)
            figures.spans += len(spans)
        await conn.execute(AGGREGATE, owner_id, list(CONTAINER_KINDS))
    finally:
        await conn.close()
    figures.seconds = time.perf_counter() - start
    return figures


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def plain_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def explain_slow(database_url: str, min_ms: int | None) -> None:
    """With `min_ms`, every later connection logs the plan (EXPLAIN ANALYZE, BUFFERS) of each
    statement slower than that to PostgreSQL's log (auto_explain): the API's own statements, as it
    sends them. Without, that is switched off again (a reused --data-dir may have it on)."""
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        name = await conn.fetchval("SELECT current_database()")
        database = f'"{name}"'
        if min_ms is None:
            for setting in ("session_preload_libraries", "auto_explain.log_min_duration"):
                await conn.execute(f"ALTER DATABASE {database} RESET {setting}")
            return
        await conn.execute(f"ALTER DATABASE {database} SET session_preload_libraries = 'auto_explain'")
        for setting, value in (
            ("log_min_duration", f"'{int(min_ms)}ms'"),
            ("log_analyze", "on"),
            ("log_buffers", "on"),
            ("log_nested_statements", "on"),
        ):
            await conn.execute(f"ALTER DATABASE {database} SET auto_explain.{setting} = {value}")
    finally:
        await conn.close()


async def shape(database_url: str, owner: str) -> float:
    """001's batch names no user or session (the trace's user is the sender's account), so one
    UPDATE gives the traces USERS users and SESSIONS sessions; then VACUUM ANALYZE, as autovacuum
    would by the time anyone queries. Returns the seconds it took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        await conn.execute(
            f"""UPDATE traces SET
                user_id = 'user-' || lpad((abs(hashtext(trace_id)) % {USERS})::text, 2, '0'),
                session_id = 'session-' || lpad((abs(hashtext(trace_id || '/s')) % {SESSIONS})::text, 5, '0')
            WHERE owner_id = $1""",
            uuid.UUID(owner),
        )
        await conn.execute("VACUUM ANALYZE traces")
        await conn.execute("VACUUM ANALYZE spans")
        await conn.execute("VACUUM ANALYZE span_events")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def sizes(database_url: str) -> str:
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        rows = await conn.fetch(
            """SELECT relname, n_live_tup, pg_size_pretty(pg_total_relation_size(relid)) AS size
               FROM pg_stat_user_tables WHERE relname IN ('traces', 'spans') ORDER BY relname"""
        )
    finally:
        await conn.close()
    return ", ".join(f"{r['relname']} {r['n_live_tup']:,} rows {r['size']}" for r in rows)


# ------------------------------------------------------------------------------------------ queries


@dataclass
class Probe:
    label: str
    target_ms: float
    # The i-th request's path, given the previous answer (cursor paging follows it).
    path: Callable[[int, Any], str]
    project_key: bool = False


def fixed(path: str, **query: Any) -> Callable[[int, Any], str]:
    url = f"{path}?{urllib.parse.urlencode(query)}" if query else path
    return lambda _i, _previous: url


def following_cursor(path: str, **query: Any) -> Callable[[int, Any], str]:
    def next_path(_i: int, previous: Any) -> str:
        cursor = previous and previous.get("pagination", {}).get("next_cursor")
        return f"{path}?{urllib.parse.urlencode({**query, **({'cursor': cursor} if cursor else {})})}"

    return next_path


def probes(traces: int, now: datetime) -> list[Probe]:
    day = (now - timedelta(days=10)).replace(microsecond=0)
    week = (now - timedelta(days=17)).replace(microsecond=0)
    rng = random.Random(7)
    ids = [f"bench-{rng.randrange(traces):07d}" for _ in range(1000)]
    deep = min(10_000, max(0, traces - 100))
    lst, ana = TARGET_LIST_MS, TARGET_ANALYTICS_MS
    out = [
        # The floor under every figure: a request that reads nothing, then one that only authenticates.
        Probe("GET /health (no database)", lst, fixed("/health")),
        Probe("GET /api/auth/me (the API key checked)", lst, fixed("/api/auth/me")),
        Probe("GET /v1/traces (limit 50)", lst, fixed("/v1/traces")),
        Probe("  ?limit=200", lst, fixed("/v1/traces", limit=200)),
        Probe("  ?status=error", lst, fixed("/v1/traces", status="error")),
        Probe("  ?status=ok", lst, fixed("/v1/traces", status="ok")),
        Probe("  ?status=running (Opswald: unset)", lst, fixed("/v1/traces", status="running")),
        Probe(
            "  ?start_date&end_date (1 day)",
            lst,
            fixed("/v1/traces", start_date=day.isoformat(), end_date=(day + timedelta(days=1)).isoformat()),
        ),
        Probe(
            "  ?start_time&end_time (7 days)",
            lst,
            fixed("/v1/traces", start_time=week.isoformat(), end_time=(week + timedelta(days=7)).isoformat()),
        ),
        Probe("  ?error=true", lst, fixed("/v1/traces", error="true")),
        Probe("  ?error=false", lst, fixed("/v1/traces", error="false")),
        Probe("  ?model=gpt-4o (common)", lst, fixed("/v1/traces", model="gpt-4o")),
        Probe("  ?model=llama-3.3-70b (rare)", lst, fixed("/v1/traces", model="llama-3.3-70b")),
        Probe("  ?min_cost=0.05", lst, fixed("/v1/traces", min_cost=0.05)),
        Probe("  ?min_cost=0.01&max_cost=0.02", lst, fixed("/v1/traces", min_cost=0.01, max_cost=0.02)),
        Probe("  ?user_id=user-07", lst, fixed("/v1/traces", user_id="user-07")),
        Probe("  ?session_id=session-00042", lst, fixed("/v1/traces", session_id="session-00042")),
        Probe(
            "  ?model&error=true&start_time (combined)",
            lst,
            fixed("/v1/traces", model="claude-sonnet-4", error="true", start_time=week.isoformat()),
        ),
        Probe("  ?cursor= (following next_cursor)", lst, following_cursor("/v1/traces")),
        Probe(f"  ?offset={deep}", lst, fixed("/v1/traces", offset=deep)),
        Probe("  with the project key (vgl_)", lst, fixed("/v1/traces"), project_key=True),
        Probe("GET /v1/traces/{id}", lst, lambda i, _p: f"/v1/traces/{ids[i % len(ids)]}"),
        Probe("GET /v1/spans (limit 50)", lst, fixed("/v1/spans")),
        Probe("  ?kind=llm", lst, fixed("/v1/spans", kind="llm")),
        Probe("  ?kind=retrieval", lst, fixed("/v1/spans", kind="retrieval")),
        Probe("  ?status=error", lst, fixed("/v1/spans", status="error")),
        Probe("  ?trace_id=", lst, lambda i, _p: f"/v1/spans?trace_id={ids[i % len(ids)]}"),
        Probe("GET /v2/traces", lst, fixed("/v2/traces")),
        Probe("  ?name=support", lst, fixed("/v2/traces", name="support")),
    ]
    for period in ("1d", "7d", "30d", "90d"):
        for group_by in ("day", "week", "month"):
            out.append(
                Probe(
                    f"GET /v1/analytics/usage?period={period}&group_by={group_by}",
                    ana,
                    fixed("/v1/analytics/usage", period=period, group_by=group_by),
                )
            )
    for period in ("1d", "7d", "30d", "90d"):
        out.append(
            Probe(f"GET /v1/analytics/cost?period={period}", ana, fixed("/v1/analytics/cost", period=period))
        )
    out += [
        Probe("GET /v2/analytics/usage (30 days by day)", ana, fixed("/v2/analytics/usage")),
        Probe("  ?granularity=hour", ana, fixed("/v2/analytics/usage", granularity="hour")),
        Probe("  ?group_by=model", ana, fixed("/v2/analytics/usage", group_by="model")),
    ]
    return out


def matched(body: Any) -> str:
    """How many rows the query matched, as the answer says."""
    if not isinstance(body, dict):
        return ""
    for key in ("total",):
        if isinstance(body.get(key), int):
            return f"{body[key]:,}"
    meta = body.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("total_count"), int):
        return f"{meta['total_count']:,}"
    if "total_traces" in body:
        return f"{body['total_traces']:,} tr"
    if "spans" in body:
        return f"{len(body['spans'])} spans"
    return ""


async def measure(
    http: httpx.AsyncClient, probe: Probe, requests: int, headers: dict[str, str]
) -> tuple[list[float], Any]:
    times: list[float] = []
    previous: Any = None
    first: Any = None
    for i in range(WARMUP + requests):
        path = probe.path(i, previous)
        sent = time.perf_counter()
        response = await http.get(path, headers=headers)
        took = (time.perf_counter() - sent) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:500]}")
        previous = response.json()
        if first is None:
            first = previous
        if i >= WARMUP:
            times.append(took)
    return times, first


async def run_queries(url: str, filled: Account, traces: int, requests: int) -> int:
    print(f"\n{requests} requests each, one at a time, after {WARMUP} discarded; milliseconds")
    print(f"  {'route':<52}{'matched':>12}{'p50':>8}{'p95':>8}   target")
    missed = 0
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for probe in probes(traces, datetime.now(UTC)):
            key = filled.project_key if probe.project_key else filled.api_key
            times, first = await measure(http, probe, requests, {"Authorization": f"Bearer {key}"})
            p50, p95 = pct(times, 50), pct(times, 95)
            verdict = "ok" if p95 <= probe.target_ms else "MISSED"
            missed += verdict != "ok"
            figures = f"{matched(first):>12}{p50:8.1f}{p95:8.1f}"
            print(f"  {probe.label:<52}{figures}   <= {probe.target_ms:.0f} {verdict}", flush=True)
    return missed


# ------------------------------------------------------------------------------------------- main


def ingest_report(name: str, figures: Ingested, target: bool) -> None:
    suffix = f"   (target >= {TARGET_INGEST_SPANS_S:,.0f} spans/s)" if target else ""
    unit = "requests" if target else "traces"
    print(
        f"  {name}: {figures.spans:,} spans in {figures.requests:,} {unit}, {figures.seconds:.1f} s:"
        f" {figures.rate:,.0f} spans/s{suffix}"
    )
    if figures.request_ms:
        print(
            f"    per request p50 {pct(figures.request_ms, 50):.1f} ms,"
            f" p95 {pct(figures.request_ms, 95):.1f} ms, {figures.requests / figures.seconds:.0f} requests/s"
        )


async def bench(endpoints: Endpoints, data_dir: Path, args: argparse.Namespace) -> None:
    spans_each = args.spans // args.traces
    if spans_each < 2:
        raise SystemExit("--spans must be at least twice --traces (a root span and a step)")
    mark = data_dir / FILLED_MARK
    fsync = "on (--durable)" if args.durable else "off, as in the tests (--durable: on)"
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; PostgreSQL fsync {fsync}")
    await explain_slow(endpoints.database_url, args.explain_ms)
    if args.explain_ms is not None:
        log = data_dir / "logs" / "postgres.log"
        print(f"plans of statements over {args.explain_ms} ms go to {log} (the figures are slower)")
    with api_processes(endpoints, data_dir, args.api_processes) as urls:
        print(f"API: {len(urls)} `everloop api` process(es) at {', '.join(urls)}", flush=True)
        if mark.exists():
            filled = msgspec.json.decode(mark.read_bytes(), type=Account)
            print(f"the store in {data_dir} is filled already: measuring the queries only")
            print(f"  {await sizes(endpoints.database_url)}")
        else:
            async with httpx.AsyncClient(base_url=urls[0], timeout=60) as http:
                filled = await account(http, "filled")
                other = await account(http, "wide")
            via_http = min(args.traces, args.http_traces)
            print(
                f"\nfill: {args.traces:,} traces of {spans_each} spans ({args.traces * spans_each:,} spans),"
                f" {via_http:,} of them through POST /v1/traces with the project key,"
                f" {args.clients} requests in flight",
                flush=True,
            )
            fill_started = time.perf_counter()
            source = batches(args.traces, spans_each, seed=1)
            http_figures = await ingest_http(
                urls, filled.project_key, _take(source, via_http), spans_each, via_http, args.clients
            )
            ingest_report("through HTTP, one trace per request", http_figures, target=True)
            if via_http < args.traces:
                rest = await fill_sql(endpoints.database_url, filled.user_id, filled.project_id, source)
                ingest_report("NOT through HTTP: the rest by SQL (COPY, one UPDATE)", rest, target=False)
            print(f"  fill took {time.perf_counter() - fill_started:.0f} s", flush=True)
            if args.wide_batches:
                print(f"\nbatches of 100 spans: {args.wide_batches} traces of 100 spans, another account")
                wide = await ingest_http(
                    urls,
                    other.project_key,
                    batches(args.wide_batches, 100, seed=2, first=10_000_000),
                    100,
                    args.wide_batches,
                    args.clients,
                )
                ingest_report("through HTTP, 100 spans per request", wide, target=True)
            took = await shape(endpoints.database_url, filled.user_id)
            print(f"\nusers and sessions set by SQL, then VACUUM ANALYZE: {took:.0f} s")
            print(f"  {await sizes(endpoints.database_url)}", flush=True)
            mark.write_bytes(msgspec.json.encode(filled))
        missed = await run_queries(urls[0], filled, args.traces, args.requests)
        print(f"\n{missed} of the routes missed their p95 target; load average {os.getloadavg()[0]:.1f}")


def _take(source: Iterator[bytes], count: int) -> Iterator[bytes]:
    for _ in range(count):
        body = next(source, None)
        if body is None:
            return
        yield body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.trace_store", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans in the store (default 1,000,000)")
    parser.add_argument("--traces", type=int, default=100_000, help="traces they make (default 100,000)")
    parser.add_argument("--requests", type=int, default=50, help="measured requests per query (default 50)")
    parser.add_argument("--clients", type=int, default=8, help="ingest requests in flight (default 8)")
    parser.add_argument("--api-processes", type=int, default=1, help="`everloop api` processes (default 1)")
    parser.add_argument(
        "--http-traces",
        type=int,
        default=HTTP_TRACES,
        help=f"traces sent through HTTP (default {HTTP_TRACES:,}); the rest are written by SQL",
    )
    parser.add_argument(
        "--wide-batches", type=int, default=200, help="then this many 100-span batches (default 200; 0: none)"
    )
    parser.add_argument(
        "--durable", action="store_true", help="PostgreSQL with fsync (default: off, as the tests)"
    )
    parser.add_argument(
        "--explain-ms",
        type=int,
        default=None,
        help="log the plans of statements slower than this (auto_explain)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="keep the data here; reuse a filled store"
    )
    args = parser.parse_args(argv)
    configure_logging("WARNING", LogFormat.CONSOLE)
    with tempfile.TemporaryDirectory(prefix="everloop-bench-") as tmp:
        data_dir = args.data_dir.resolve() if args.data_dir else Path(tmp)
        env = {"EVERLOOP_DATA_DIR": str(data_dir)}
        env |= {f"EMBEDDED_{part}_PORT": "0" for part in ("POSTGRES", "REDIS", "TEMPORAL", "TEMPORAL_UI")}
        stack = EmbeddedStack(load_settings(env), durable=args.durable)
        try:
            print("starting the embedded stack...", flush=True)
            endpoints = stack.start()
            upgrade(endpoints.database_url)
            asyncio.run(bench(endpoints, data_dir, args))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
