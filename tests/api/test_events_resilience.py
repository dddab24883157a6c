"""The event stream without Redis, across a Redis restart, and from two API processes at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from core import bus
from core.db import Database
from core.schemas import events as ev
from core.settings import Settings
from everloop.stack import Endpoints
from everloop.stack.process import ManagedProcess, free_port
from everloop.stack.services import start_redis
from services import event_stream, events
from tests.apps import app_for
from tests.conftest import make_settings
from tests.factories import Client
from tests.servers import running
from tests.sse import new_session, open_sse, store, store_and_publish


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_stream, "POLL_S", 0.05)


@pytest.fixture
async def redis_client(endpoints: Endpoints) -> AsyncIterator[redis.Redis]:
    client = bus.connect(endpoints.redis_url)
    yield client
    await client.aclose()


class PrivateRedis:
    """A Redis of this test's own, to stop and start again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: ManagedProcess | None = None

    async def start(self) -> None:
        self.process, _ = await asyncio.to_thread(
            start_redis, self.directory / "data", self.directory / "logs", self.port, timeout=30
        )

    async def stop(self) -> None:
        if self.process is not None:
            await asyncio.to_thread(self.process.stop)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    private = PrivateRedis(tmp_path)
    yield private
    if private.process is not None:
        private.process.stop()


async def test_without_redis_the_stream_polls_the_database(
    client: Client, db: Database, endpoints: Endpoints
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = app_for(make_settings(endpoints, REDIS_URL=nowhere), configure_logs=False)
    session_id, path = await new_session(client)
    first = await store(db, session_id)
    async with running(app) as server, open_sse(server, path) as stream:
        assert (await stream.next()).comment == event_stream.POLLING
        assert (await stream.next()).id == str(first.id)
        later = [await store(db, session_id) for _ in range(3)]  # stored, announced nowhere
        assert [(await stream.event()).id for _ in range(3)] == [str(e.id) for e in later]
        async with httpx.AsyncClient() as http:
            listing = (await http.get(server.url + path)).json()
        assert [e["sequence"] for e in listing["data"]] == [1, 2, 3, 4]


async def test_the_stream_survives_a_redis_restart_and_follows_live_again(
    client: Client, db: Database, endpoints: Endpoints, private_redis: PrivateRedis
) -> None:
    await private_redis.start()
    app = app_for(make_settings(endpoints, REDIS_URL=private_redis.url), configure_logs=False)
    session_id, path = await new_session(client)
    async with running(app) as server, open_sse(server, path) as stream:
        before = bus.connect(private_redis.url)
        first = await store_and_publish(db, before, session_id)
        assert (await stream.next()).id == str(first.id)
        await before.aclose()

        await private_redis.stop()
        assert (await stream.next()).comment == event_stream.POLLING
        while_down = await store(db, session_id)
        assert (await stream.event()).id == str(while_down.id)

        await private_redis.start()
        assert await stream.until_comment(event_stream.LIVE) == []
        after = bus.connect(private_redis.url)
        try:
            # Only a live subscription can carry an ephemeral frame: this proves Redis is followed again.
            back = ev.OutputMessageDelta(message_id="m", delta="back")
            await events.publish_ephemeral(after, session_id, back)
            frame = await stream.event()
            assert (frame.event, frame.id) == ("output.message.delta", None)
            last = await store_and_publish(db, after, session_id)
            assert (await stream.event()).id == str(last.id)
        finally:
            await after.aclose()


async def test_two_api_processes_stream_the_same_events(
    client: Client, db: Database, settings: Settings, redis_client: redis.Redis
) -> None:
    session_id, path = await new_session(client)
    stored = [await store(db, session_id) for _ in range(3)]
    one_app = app_for(settings, configure_logs=False)
    two_app = app_for(settings, configure_logs=False)
    async with (
        running(one_app) as one,
        running(two_app) as two,
        open_sse(one, path) as first,
        open_sse(two, path, headers={"Last-Event-ID": str(stored[0].id)}) as second,
    ):
        live = [await store_and_publish(db, redis_client, session_id) for _ in range(3)]
        delta = ev.OutputMessageDelta(message_id="m", delta="x")
        await events.publish_ephemeral(redis_client, session_id, delta)
        seen_first = [(f.event, f.id) for f in [await first.event() for _ in range(7)]]
        seen_second = [(f.event, f.id) for f in [await second.event() for _ in range(6)]]
    expected = [("test.step", str(e.id)) for e in [*stored, *live]] + [("output.message.delta", None)]
    assert seen_first == expected
    assert seen_second == expected[1:]
