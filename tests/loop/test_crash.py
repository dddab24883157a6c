"""kill -9 the worker while an LLM reply streams: another worker finishes the turn, once."""

from __future__ import annotations

import asyncio
import signal
import uuid

import httpx
import msgspec
from sqlalchemy import select

from core import bus
from core.db import Database
from core.db.models import Event
from everloop.stack import Endpoints
from services.events import channel
from tests import factories
from tests.apps import app_for
from tests.conftest import make_settings
from tests.servers import running
from tests.workers import Workers


async def test_a_killed_worker_loses_no_turn_and_repeats_no_step(
    endpoints: Endpoints, db: Database, simulator_url: str, task_queue: str, workers: Workers
) -> None:
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    first = workers.start()
    words = " ".join(f"w{i}" for i in range(80))
    with running(app_for(settings, configure_logs=False)) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            provider = await factories.provider(client, base_url=simulator_url)
            model = await factories.model(
                client, provider["id"], settings={"mode": "fixed", "text": words, "chunk_delay": 0.05}
            )
            agent = await factories.agent(client, default_model_id=model["id"])
            session = await factories.session(client, agent["id"])
            base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
            session_id = uuid.UUID(session["id"])
            redis = bus.connect(endpoints.redis_url)
            pubsub = redis.pubsub()
            await pubsub.subscribe(channel(session_id))
            await pubsub.get_message(timeout=5)
            frames: list[dict[str, object]] = []

            async def until(kind: str) -> None:
                while not any(f["type"] == kind for f in frames):
                    raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if raw is not None:
                        frames.append(msgspec.json.decode(raw["data"]))

            try:
                posted = await client.post(f"{base}/messages", json=factories.text_message("speak"))
                assert posted.status_code == 201
                await asyncio.wait_for(until("output.message.delta"), 60)
                first.send_signal(signal.SIGKILL)  # mid-stream, no chance to clean up
                first.wait(timeout=10)
                workers.start()
                # The heartbeat timeout (10 s) tells Temporal the attempt is dead; it retries.
                await asyncio.wait_for(until("turn.completed"), 90)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await redis.aclose()

            messages = (await client.get(f"{base}/messages")).json()["data"]
    assert [m["role"] for m in messages] == ["user", "agent"]
    assert messages[1]["content"][0]["text"] == words
    resets = [f for f in frames if f["type"] == "output.message.reset"]
    assert resets, "the retry must tell clients to drop the partial text"
    async with db.session() as s:
        stored = (
            (await s.execute(select(Event).where(Event.session_id == session_id).order_by(Event.sequence)))
            .scalars()
            .all()
        )
    types = [e.type for e in stored]
    assert types.count("message.agent") == types.count("output.message.completed") == 1
    assert types.count("llm.generation") == 1
    assert types.count("turn.completed") == 1
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))
