"""kill -9 the worker while an LLM reply streams: another worker finishes the turn, once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from sqlalchemy import select

from api.app import create_app
from core import bus
from core.db import Database
from core.db.models import Event
from core.settings import Settings
from everloop.stack import Endpoints
from services.events import channel
from tests import factories
from tests.conftest import TEST_MASTER_KEY, make_settings
from tests.servers import running

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url or "",
            "REDIS_URL": settings.redis_url or "",
            "TEMPORAL_ADDRESS": settings.temporal_address or "",
            "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "SECRETS_ENCRYPTION_KEY": TEST_MASTER_KEY,
            "LOG_LEVEL": "WARNING",
        }
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "everloop.cli", "worker"], cwd=ROOT, env=self.env, stdout=log, stderr=log
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


@pytest.fixture
def workers(endpoints: Endpoints, task_queue: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue), tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


async def test_a_killed_worker_loses_no_turn_and_repeats_no_step(
    endpoints: Endpoints, db: Database, simulator_url: str, task_queue: str, workers: Workers
) -> None:
    settings = make_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue)
    first = workers.start()
    words = " ".join(f"w{i}" for i in range(80))
    with running(create_app(settings, configure_logs=False)) as api:
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
    assert types.count("message.agent") == 1
    assert types.count("llm.generation") == 1
    assert types.count("turn.completed") == 1
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))
