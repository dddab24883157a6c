"""The chaos tier: whole turns on a stack whose parts the test breaks while they work.

Each test gets a PostgreSQL and a Redis of its own (tests/outage.py), the API as a real server in a
thread, workers as real `everloop worker` processes (so they can be killed), the shared Temporal on
a task queue of its own, the simulator as the LLM and the test MCP server for tools that take time.
Watchers read each session's SSE stream the way a browser's EventSource does (reconnecting with
Last-Event-ID after an error or a refusal), and `check_turns` holds every turn to the promises:
one end event each, contiguous sequences, one stored result per tool call, and every stored event
seen by the watcher exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowHistory

from core.db import Database
from core.db.models import Event, Message
from core.settings import Settings
from everloop.stack import Endpoints
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.mcp_server import serve_http
from tests.outage import OwnPostgres, OwnRedis, own_postgres, own_redis
from tests.servers import running
from tests.sse import SSE
from tests.workers import Workers, worker_env

TURN_ENDS = {"turn.completed", "turn.failed", "turn.cancelled"}
# EventSource's reconnection delay (browsers wait about 3 s; shorter keeps the tier fast).
RECONNECT_S = 0.5


@dataclass
class Watcher:
    """One session's SSE stream, read as EventSource reads it, for as long as the test runs."""

    url: str
    seen: list[int] = field(default_factory=list)  # sequences of stored events, as received
    refused: list[int] = field(default_factory=list)  # statuses of refused (re)connects
    connects: int = 0
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        last: str | None = None
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as http:
            while True:
                headers = {"Accept": "text/event-stream"}
                if last is not None:
                    headers["Last-Event-ID"] = last
                try:
                    async with http.stream("GET", self.url, headers=headers) as response:
                        self.connects += 1
                        if response.status_code != 200:
                            self.refused.append(response.status_code)
                        else:
                            stream = SSE(response)
                            while True:
                                frame = await stream.next(timeout=120)
                                if frame.id is not None:
                                    self.seen.append(int(frame.json()["sequence"]))
                                    last = frame.id
                except (httpx.TransportError, StopAsyncIteration, TimeoutError):
                    pass  # the stream ended or the server is away: reconnect, as a browser does
                await asyncio.sleep(RECONNECT_S)

    async def until_seen(self, sequence: int, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while not self.seen or max(self.seen) < sequence:
                await asyncio.sleep(0.05)


@dataclass
class Stack:
    postgres: OwnPostgres
    redis: OwnRedis
    settings: Settings
    db: Database
    client: httpx.AsyncClient
    workers: Workers
    simulator_url: str
    mcp_url: str
    temporal: Client
    watchers: list[Watcher] = field(default_factory=list)

    async def chat(
        self, simulator: dict[str, Any], *, tools: bool = False, capabilities: list[Any] | None = None
    ) -> str:
        """An agent (with the test MCP server's tools if asked, or the `capabilities` given) and a
        session, with a watcher on its stream from the start; returns the session's path."""
        provider = await factories.provider(self.client, base_url=self.simulator_url)
        model = await factories.model(self.client, provider["id"], settings=simulator)
        capabilities = list(capabilities or [])
        if tools:
            server = await self.client.post(
                "/v1/mcp-servers",
                json={
                    "name": f"tools-{uuid.uuid4().hex[:6]}",
                    "transport": "streamable_http",
                    "url": self.mcp_url,
                },
            )
            assert server.status_code == 201, server.text
            capabilities.append(f"mcp:{server.json()['id']}")
        agent = await factories.agent(self.client, default_model_id=model["id"], capabilities=capabilities)
        session = await factories.session(self.client, agent["id"])
        base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
        watcher = Watcher(f"{self.client.base_url}{base}/events")
        watcher.task = asyncio.create_task(watcher.run())
        self.watchers.append(watcher)
        return base

    async def post(self, base: str, text: str) -> str:
        response = await self.client.post(f"{base}/messages", json=factories.text_message(text))
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def stored(self, base: str) -> list[Event]:
        session_id = uuid.UUID(base.rsplit("/", 1)[1])
        async with self.db.session() as s:
            query = select(Event).where(Event.session_id == session_id).order_by(Event.sequence)
            return list((await s.execute(query)).scalars())

    async def until(self, base: str, kind: str, count: int = 1, timeout: float = 60) -> list[Event]:
        """The session's events once `count` of type `kind` are stored (read while the database is up)."""
        async with asyncio.timeout(timeout):
            while True:
                stored = await self.stored(base)
                if sum(1 for e in stored if e.type == kind) >= count:
                    return stored
                await asyncio.sleep(0.1)

    async def until_turns_end(self, base: str, turns: int, timeout: float) -> list[Event]:
        """Waits, through an outage, until `turns` turns have ended."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    stored = await self.stored(base)
                except Exception:  # the database is still away
                    stored = []
                if sum(1 for e in stored if e.type in TURN_ENDS) >= turns:
                    return stored
                await asyncio.sleep(0.2)

    async def turn_history(self, base: str) -> WorkflowHistory:
        """The workflow history of the run that did the session's first turn."""
        handle = self.temporal.get_workflow_handle(f"session-{base.rsplit('/', 1)[1]}")
        latest = await handle.fetch_history()
        started = latest.events[0].workflow_execution_started_event_attributes
        # The turn's run continued as new after it; its history is the run before the latest.
        run_id = started.continued_execution_run_id or latest.run_id
        return await self.temporal.get_workflow_handle(handle.id, run_id=run_id).fetch_history()

    async def attempts(self, base: str) -> list[tuple[str, int]]:
        """(activity type, attempt that ended it) of the activities of the session's first turn,
        read from the workflow's history: attempt 1 means nothing was retried."""
        history = await self.turn_history(base)
        scheduled = {
            e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        }
        return [
            (scheduled[a.scheduled_event_id], a.attempt)
            for e in history.events
            if e.HasField("activity_task_started_event_attributes")
            for a in [e.activity_task_started_event_attributes]
        ]

    async def check_turns(self, base: str, watcher: Watcher, turns: int) -> list[Event]:
        """Every promise of the loop for the session, once its `turns` turns have ended."""
        stored = await self.until_turns_end(base, turns, timeout=60)
        types = [e.type for e in stored]
        assert [e.sequence for e in stored] == list(range(1, len(stored) + 1)), "sequences have a gap"
        started = [str(e.context.get("turn_id")) for e in stored if e.type == "turn.started"]
        ended = [str(e.context.get("turn_id")) for e in stored if e.type in TURN_ENDS]
        assert len(started) == turns
        assert sorted(ended) == sorted(started), "every turn ends exactly once"
        assert types.count("turn.completed") == turns, [
            (e.type, e.data) for e in stored if e.type == "turn.failed"
        ]
        session_id = uuid.UUID(base.rsplit("/", 1)[1])
        async with self.db.session() as s:
            messages = list(
                (await s.execute(select(Message).where(Message.session_id == session_id))).scalars()
            )
        calls = [
            p["id"] for m in messages if m.role == "agent" for p in m.content if p["type"] == "tool_call"
        ]
        results = [p["tool_call_id"] for m in messages if m.role == "tool_result" for p in m.content]
        assert sorted(results) == sorted(calls), "one stored result per tool call"
        completed = [e.data["tool_call_id"] for e in stored if e.type == "tool.call_completed"]
        assert sorted(completed) == sorted(calls)
        assert all(e.data["status"] == "success" for e in stored if e.type == "tool.call_completed"), (
            "no tool result may be thrown away"
        )
        await watcher.until_seen(stored[-1].sequence)
        assert watcher.seen == [e.sequence for e in stored], "the SSE client saw every event once, in order"
        return stored


@pytest.fixture
def backing(tmp_path: Path) -> Iterator[tuple[OwnPostgres, OwnRedis]]:
    with own_postgres(tmp_path, durable=True) as postgres, own_redis(tmp_path) as redis:
        yield postgres, redis


@pytest.fixture
async def stack(
    endpoints: Endpoints,
    backing: tuple[OwnPostgres, OwnRedis],
    simulator_url: str,
    task_queue: str,
    temporal_client: Client,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    postgres, redis = backing
    settings = make_settings(
        endpoints, DATABASE_URL=postgres.url, REDIS_URL=redis.url, TEMPORAL_TASK_QUEUE=task_queue
    )
    workers = Workers(worker_env(settings, LOG_LEVEL="INFO", LOG_FORMAT="console"), tmp_path)
    db = Database(postgres.url, pool_size=2, timeouts=settings.database_timeouts)
    watchers: list[Watcher] = []
    try:
        with serve_http() as (mcp_url, _), running(app_for(settings, configure_logs=False)) as api:
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
                built = Stack(
                    postgres,
                    redis,
                    settings,
                    db,
                    client,
                    workers,
                    simulator_url,
                    mcp_url,
                    temporal_client,
                    watchers,
                )
                yield built
                for watcher in built.watchers:
                    if watcher.task is not None:
                        watcher.task.cancel()
    finally:
        workers.stop_all()
        await db.dispose()
