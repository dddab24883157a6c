"""/metrics scraped over HTTP while real turns run: the API's (requests, streams, pools) and the
worker's (turns, steps, LLM and tool calls), on the simulator through a worker with its metrics on.
Counters are compared before and after, never as absolute values."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from activities.deps import LoopDeps
from activities.llm import ReasonActivities
from activities.metrics import MetricsInterceptor, WorkerMetrics
from activities.turns import TurnActivities
from core import bus, metrics
from core.db import Database
from core.schemas.turns import SessionLoop, TurnEnd
from everloop.stack import Endpoints
from everloop.stack.process import free_port
from everloop.worker import build_worker, serve_metrics
from tests.apps import app_for
from tests.conftest import make_settings
from tests.loop.conftest import Loop
from tests.servers import Server, running
from tests.sse import open_sse

TOKEN = "worker-metrics-token-0123456789"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Stack:
    def __init__(self, loop: Loop, server: Server, worker_url: str) -> None:
        self.loop = loop
        self.server = server
        self.worker_url = worker_url

    async def api(self) -> Samples:
        response = await self.loop.client.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse(response.text)

    async def worker(self) -> Samples:
        async with httpx.AsyncClient() as http:
            response = await http.get(self.worker_url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        return parse(response.text)


@pytest.fixture
async def stack(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> AsyncIterator[Stack]:
    """The `loop` fixture's stack, its worker timing its activities and serving them on a free port."""
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    redis = bus.connect(endpoints.redis_url)
    worker_metrics = WorkerMetrics(db, redis)
    worker = build_worker(temporal_client, settings, db, redis, worker_metrics=worker_metrics)
    served = metrics.serve(worker_metrics.registry, "127.0.0.1", 0, TOKEN)
    assert served is not None
    try:
        with running(app_for(settings, configure_logs=False)) as server:
            async with worker, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                loop = Loop(client, db, endpoints, settings, temporal_client, simulator_url, worker)
                yield Stack(loop, server, f"http://127.0.0.1:{served.port}/metrics")
    finally:
        await asyncio.to_thread(served.close)  # joins its thread: not on the loop
        await redis.aclose()


MESSAGES = "/v1/agents/{agent_id}/sessions/{session_id}/messages"


class _Run(ActivityInboundInterceptor):
    """The end of the interceptor chain: runs the activity, as the worker's last interceptor does."""

    def __init__(self) -> None:
        pass

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        return await input.fn(*input.args)


async def test_a_turn_with_a_tool_call_moves_the_api_and_worker_metrics(stack: Stack) -> None:
    loop = stack.loop
    script = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "2 + 3 = 5"]
    base = await loop.chat(simulator={"mode": "script", "script": script}, capabilities=["test_math"])
    api_before, worker_before = await stack.api(), await stack.worker()

    await loop.send(base, "what is 2+3?")

    api_after, worker_after = await stack.api(), await stack.worker()

    def api_delta(name: str, **labels: str) -> float:
        return value(api_after, name, **labels) - value(api_before, name, **labels)

    def worker_delta(name: str, **labels: str) -> float:
        return value(worker_after, name, **labels) - value(worker_before, name, **labels)

    # The message's POST, under its route's template; its latency observed once.
    posted = {"method": "POST", "route": MESSAGES}
    assert api_delta("everloop_http_requests_total", **posted, status="201") == 1
    assert api_delta("everloop_http_request_duration_seconds_count", **posted, status_class="2xx") == 1
    # No label anywhere holds an id: not the session's, not the agent's, not a raw path.
    ids = base.split("/")[3::2]
    for (_, labels), _ in api_after.items():
        for _, label in labels:
            assert not any(i in label for i in ids), label
    assert value(api_after, "everloop_db_pool_size") == 10
    assert value(api_after, "everloop_db_pool_max_connections") == 20  # and SQLAlchemy's overflow
    assert ("everloop_redis_pool_connections", frozenset({("state", "in_use")})) in api_after

    # One turn, two steps (the tool call, then the answer): two LLM calls and one tool call.
    assert worker_delta("everloop_turns_total", outcome="completed") == 1
    assert worker_delta("everloop_turn_duration_seconds_count", outcome="completed") == 1
    assert worker_delta("everloop_steps_total") == 2
    assert worker_delta("everloop_llm_call_duration_seconds_count", outcome="completed") == 2
    assert worker_delta("everloop_tool_call_duration_seconds_count", status="success") == 1
    for activity in ("reason", "run_tool", "finish_turn"):
        count = "everloop_activity_duration_seconds_count"
        assert worker_delta(count, activity=activity, outcome="completed") >= 1, activity
    assert worker_delta("everloop_llm_call_duration_seconds_sum", outcome="completed") > 0
    assert worker_delta("everloop_activity_schedule_to_start_seconds_count", activity="reason") == 2
    assert value(worker_after, "everloop_activities_running", activity="reason") == 0
    assert value(worker_after, "everloop_db_pool_size") == 2  # the test's Database(pool_size=2)
    assert value(worker_after, "everloop_db_pool_max_connections") == 12


async def test_an_open_stream_counts_until_it_closes(stack: Stack) -> None:
    loop = stack.loop
    base = await loop.chat(simulator={"mode": "fixed", "text": "hi"})
    route = "/v1/agents/{agent_id}/sessions/{session_id}/events"
    before = value(await stack.api(), "everloop_sse_streams_open", route=route)
    async with open_sse(stack.server, f"{base}/events"):
        # `connected` was read: the stream is open on the server's side.
        assert value(await stack.api(), "everloop_sse_streams_open", route=route) == before + 1
    # open_sse returns once the server has finished the request.
    assert value(await stack.api(), "everloop_sse_streams_open", route=route) == before


async def test_the_worker_metrics_server_wants_its_token() -> None:
    registry = metrics.new_registry()
    served = metrics.serve(registry, "127.0.0.1", 0, TOKEN)
    assert served is not None
    url = f"http://127.0.0.1:{served.port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/metrics")).status_code == 401
            wrong = await http.get("/metrics", headers={"Authorization": "Bearer not-the-token-at-all"})
            assert (wrong.status_code, wrong.headers["www-authenticate"]) == (401, "Bearer")
            right = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert right.status_code == 200
            assert ("process_open_fds", frozenset()) in parse(right.text)
            assert (await http.get("/other", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 404
    finally:
        await asyncio.to_thread(served.close)


def test_metrics_that_cannot_be_served_are_not_served_and_stop_nothing() -> None:
    registry = metrics.new_registry()
    # Without a token, never on an address beyond this machine.
    assert metrics.serve(registry, "0.0.0.0", 0, None) is None
    # A port already taken: logged, not raised.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert metrics.serve(registry, "127.0.0.1", taken.getsockname()[1], TOKEN) is None


async def test_worker_metrics_port_serves_the_worker_metrics(endpoints: Endpoints, db: Database) -> None:
    redis = bus.connect(endpoints.redis_url)
    try:
        assert serve_metrics(make_settings(endpoints), db, redis) == (None, None)  # off by default
        # Refused (no token beyond loopback): no metrics, so the worker times nothing for nobody.
        refused = make_settings(
            endpoints, WORKER_METRICS_PORT=str(free_port()), WORKER_METRICS_HOST="0.0.0.0"
        )
        assert serve_metrics(refused, db, redis) == (None, None)
        port = free_port()
        settings = make_settings(endpoints, WORKER_METRICS_PORT=str(port), METRICS_TOKEN=TOKEN)
        timed, served = serve_metrics(settings, db, redis)
        assert timed is not None and served is not None
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                assert (await http.get("/metrics")).status_code == 401
                scraped = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert value(parse(scraped.text), "everloop_db_pool_size") == 2
            assert "everloop_activity_duration_seconds" in scraped.text
        finally:
            await asyncio.to_thread(served.close)
    finally:
        await redis.aclose()


async def test_a_step_or_a_turn_end_found_stored_is_not_counted_again(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attempt of `reason` that finds its step's reply stored (an earlier attempt stored it, then
    died before reporting) calls no model; a `finish_turn` that finds the end stored ends no turn.
    Each runs twice here, by hand, through the worker's interceptor: each counts once."""
    loop = stack.loop
    base, step = await loop.unstarted_turn({"mode": "fixed", "text": "hi"})
    redis = bus.connect(loop.endpoints.redis_url)
    timed = WorkerMetrics(loop.db, redis)
    inbound = MetricsInterceptor(timed).intercept_activity(_Run())
    deps = LoopDeps(db=loop.db, bus=redis, settings=loop.settings, secrets=None)
    reason, turns = ReasonActivities(deps), TurnActivities(deps)

    async def attempt(kind: str, fn: Any, arg: Any) -> Any:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, activity_type=kind)
        run = ExecuteActivityInput(fn=fn, args=[arg], executor=None, headers={})
        return await env.run(inbound.execute_activity, run)

    def sample(name: str, **labels: str) -> float:
        return timed.registry.get_sample_value(name, labels) or 0.0

    end = TurnEnd(
        session_id=step.session_id,
        turn_id=step.turn_id,
        input_message_id=step.input_message_id,
        outcome="completed",
        iterations=1,
        duration_ms=5,
    )
    try:
        for _ in range(2):
            assert (await attempt(SessionLoop.REASON, reason.reason, step)).message_id == step.message_id
        for _ in range(2):
            await attempt(SessionLoop.FINISH_TURN, turns.finish_turn, end)
        count = "everloop_activity_duration_seconds_count"
        assert sample(count, activity="reason", outcome="completed") == 2
        assert sample("everloop_llm_call_duration_seconds_count", outcome="completed") == 1
        assert sample("everloop_steps_total") == 1
        assert sample(count, activity="finish_turn", outcome="completed") == 2
        assert sample("everloop_turns_total", outcome="completed") == 1
        assert sample("everloop_turn_duration_seconds_count", outcome="completed") == 1
        assert [e.type for e in await loop.stored(base)].count("message.agent") == 1

        # Metrics that fail to record are logged: the activity's result stands.
        def broken(*args: Any) -> None:
            raise RuntimeError("a broken metric")

        monkeypatch.setattr(timed, "record", broken)
        found = await attempt(SessionLoop.REASON, reason.reason, step)
        assert found.message_id == step.message_id
        gone = msgspec.structs.replace(step, session_id=str(uuid.uuid4()))
        with pytest.raises(ApplicationError, match="is gone"):  # and so does its error
            await attempt(SessionLoop.REASON, reason.reason, gone)
    finally:
        await redis.aclose()
