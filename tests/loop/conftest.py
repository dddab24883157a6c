"""A running loop: an in-process worker on its own task queue, the API pointed at it, and the
simulator as the LLM over real HTTP."""

from __future__ import annotations

import asyncio
import traceback
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from temporalio.client import Client
from temporalio.worker import Worker

from core import bus
from core.db import Database
from core.db.models import Event, Message
from core.schemas.turns import ReasonInput
from core.settings import Settings
from everloop.stack import Endpoints
from everloop.worker import build_worker
from services import events
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.servers import running
from tests.sse import SSE

TURN_ENDS = {"turn.completed", "turn.failed", "turn.cancelled"}


@dataclass
class Loop:
    client: httpx.AsyncClient
    db: Database
    endpoints: Endpoints
    settings: Settings
    temporal: Client
    simulator_url: str
    worker: Worker

    async def chat(
        self, *, simulator: dict[str, Any] | None = None, capabilities: list[Any] | None = None, **agent: Any
    ) -> str:
        """A provider, model, agent and session; returns the session's base path."""
        provider = await factories.provider(self.client, base_url=self.simulator_url)
        model = await factories.model(self.client, provider["id"], settings=simulator or {})
        created = await factories.agent(
            self.client, default_model_id=model["id"], capabilities=capabilities or [], **agent
        )
        session = await factories.session(self.client, created["id"])
        return f"/v1/agents/{created['id']}/sessions/{session['id']}"

    async def send(
        self,
        base: str,
        text: str,
        *,
        wait: bool = True,
        timeout: float = 30,
        body: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Posts a message (`text`, or the whole request `body`); with `wait`, returns what the
        session's SSE stream carried from then to the end of the message's turn (stored events and
        live frames, as JSON)."""
        body = body or factories.text_message(text)
        if not wait:
            response = await self.client.post(f"{base}/messages", json=body)
            assert response.status_code == 201, response.text
            return []
        frames: list[dict[str, Any]] = []
        async with self.client.stream(
            "GET",
            f"{base}/events",
            headers={"accept": "text/event-stream"},
            params={"exclude": "message.user"},
        ) as stream:
            sse = SSE(stream)
            assert (await sse.event()).event == "connected"
            # Only what follows this message: start after the newest stored event.
            response = await self.client.post(f"{base}/messages", json=body)
            assert response.status_code == 201, response.text
            message_id = response.json()["id"]

            async def collect() -> None:
                while True:
                    frame = (await sse.event(timeout)).json()
                    frames.append(frame)
                    ctx = frame.get("context") or {}
                    if frame["type"] in TURN_ENDS and ctx.get("input_message_id") == message_id:
                        return

            await asyncio.wait_for(collect(), timeout)
        return frames

    async def stored(self, base: str) -> list[Event]:
        session_id = uuid.UUID(base.rsplit("/", 1)[1])
        async with self.db.session() as s:
            query = select(Event).where(Event.session_id == session_id).order_by(Event.sequence)
            return list((await s.execute(query)).scalars())

    async def unstarted_turn(self, simulator: dict[str, Any]) -> tuple[str, ReasonInput]:
        """A session holding a user message whose turn no workflow runs, and its first step's input:
        the step is run by hand (under ActivityEnvironment)."""
        base = await self.chat(simulator=simulator)
        session_id = uuid.UUID(base.rsplit("/", 1)[1])
        async with self.db.session() as db:
            message = Message(
                session_id=session_id,
                sequence=await events.next_sequence(db, session_id, "last_message_sequence"),
                role="user",
                content=[{"type": "text", "text": "hi"}],
                tags=[],
            )
            db.add(message)
            await db.commit()
        step = ReasonInput(
            session_id=str(session_id),
            turn_id=str(uuid.uuid4()),
            input_message_id=str(message.id),
            iteration=1,
            message_id=str(uuid.uuid4()),
            open_turn=True,
        )
        return base, step

    async def messages(self, base: str) -> list[dict[str, Any]]:
        body = (await self.client.get(f"{base}/messages", params={"limit": 200})).json()
        data = body["data"]
        assert isinstance(data, list)
        return data


def causes(err: BaseException) -> str:
    """The exception's causes, outermost first, each as `Type: message`, and where the innermost
    was raised."""
    chain, seen = [], err.__cause__ or err.__context__
    innermost = err
    while seen is not None:
        chain.append(f"{type(seen).__qualname__}: {seen}")
        innermost, seen = seen, seen.__cause__ or seen.__context__
    frames = traceback.extract_tb(innermost.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return " <- ".join(chain) + where


def worker_for(temporal_client: Client, settings: Settings, db: Database, redis: Redis) -> Worker:
    """`build_worker`, with its failure's causes in the message: CI's short summary shows only the
    outermost exception, and "RuntimeError: Failed validating workflow WebhookDelivery" once said
    nothing more (its cause was cut from the log; see core.temporal's `_ValidateOncePerProcess`)."""
    try:
        return build_worker(temporal_client, settings, db, redis)
    except RuntimeError as err:
        if err.__cause__ is None and err.__context__ is None:
            raise
        raise RuntimeError(f"{err}: {causes(err)}") from err


@pytest.fixture
async def loop(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> AsyncIterator[Loop]:
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    redis = bus.connect(endpoints.redis_url)
    worker = worker_for(temporal_client, settings, db, redis)
    app = app_for(settings, configure_logs=False)
    # A real server in its own thread: requests such as cancel wait on this loop's worker.
    with running(app) as server:
        async with worker, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield Loop(client, db, endpoints, settings, temporal_client, simulator_url, worker)
    await redis.aclose()


@pytest.fixture
async def loopback_loop(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> AsyncIterator[Loop]:
    """The `loop` fixture's stack, its worker allowed to reach loopback addresses for users
    (OUTBOUND_ALLOW_LOOPBACK, test-only): where the tests serve pages and providers."""
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue, OUTBOUND_ALLOW_LOOPBACK="true")
    redis = bus.connect(endpoints.redis_url)
    worker = worker_for(temporal_client, settings, db, redis)
    with running(app_for(settings, configure_logs=False)) as server:
        async with worker, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield Loop(client, db, endpoints, settings, temporal_client, simulator_url, worker)
    await redis.aclose()
