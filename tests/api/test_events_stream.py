"""GET .../events with `Accept: text/event-stream`, through a real uvicorn server: the backlog, then
live events with no gap and no duplicate, ephemeral frames, filters and keep-alives."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as redis
from litestar import Litestar

from api.state import Services
from core import bus
from core.db import Database
from core.schemas import events as ev
from core.settings import Settings
from everloop.stack import Endpoints
from services import event_log, event_stream, events, last_sequences
from tests.apps import app_for
from tests.factories import Client
from tests.servers import Server, running
from tests.sse import SSE, new_session, open_sse, store, store_and_publish


@pytest.fixture
def server_app(settings: Settings, db: Database) -> Litestar:
    return app_for(settings, configure_logs=False)


@pytest.fixture
async def server(server_app: Litestar) -> AsyncIterator[Server]:
    async with running(server_app) as server:
        yield server


@pytest.fixture
async def redis_client(endpoints: Endpoints) -> AsyncIterator[redis.Redis]:
    client = bus.connect(endpoints.redis_url)
    yield client
    await client.aclose()


def services_of(app: Litestar) -> Services:
    """The connections of the app's running lifespan."""
    services = app.state.services
    assert isinstance(services, Services)
    return services


async def _sequences(stream: SSE, count: int) -> list[int]:
    return [(await stream.event()).json()["sequence"] for _ in range(count)]


async def test_connected_then_the_backlog_after_last_event_id_then_live_events(
    client: Client, db: Database, redis_client: redis.Redis, server: Server
) -> None:
    session_id, path = await new_session(client)
    stored = [await store(db, session_id, f"step.{i}", n=i) for i in range(1, 6)]
    async with open_sse(server, path, headers={"Last-Event-ID": str(stored[1].id)}) as stream:
        backlog = [await stream.next() for _ in range(3)]
        assert [(f.event, f.id) for f in backlog] == [(f"step.{e.sequence}", str(e.id)) for e in stored[2:]]
        assert backlog[0].json() == msgspec.json.decode(msgspec.json.encode(events.to_schema(stored[2])))
        live = await store_and_publish(db, redis_client, session_id, "step.6", n=6)
        frame = await stream.next()
        assert (frame.event, frame.id, frame.json()["sequence"], frame.json()["data"]) == (
            "step.6",
            str(live.id),
            6,
            {"n": 6},
        )


async def test_since_id_sets_the_start_and_last_event_id_wins_over_it(
    client: Client, db: Database, server: Server
) -> None:
    session_id, path = await new_session(client)
    stored = [await store(db, session_id) for _ in range(5)]
    async with open_sse(server, path, params={"since_id": str(stored[2].id)}) as stream:
        assert await _sequences(stream, 2) == [4, 5]
    headers = {"Last-Event-ID": str(stored[0].id)}
    async with open_sse(server, path, headers=headers, params={"since_id": str(stored[3].id)}) as stream:
        assert await _sequences(stream, 4) == [2, 3, 4, 5]
    async with open_sse(server, path) as stream:
        assert await _sequences(stream, 5) == [1, 2, 3, 4, 5]


async def test_ephemeral_frames_are_forwarded_without_an_id_line(
    client: Client, db: Database, redis_client: redis.Redis, server: Server
) -> None:
    session_id, path = await new_session(client)
    first = await store(db, session_id)
    async with open_sse(server, path) as stream:
        assert (await stream.next()).json()["sequence"] == 1  # the backlog is read: live from here
        delta = ev.OutputMessageDelta(message_id="m1", delta="Hel")
        context = ev.EventContext(turn_id="t1", input_message_id="m0")
        await events.publish_ephemeral(redis_client, session_id, delta, context)
        await events.publish_ephemeral(
            redis_client, session_id, ev.OutputMessageReset(message_id="m1", attempt=2)
        )
        frame = await stream.next()
        # No `id:` line: a browser's Last-Event-ID stays on the last stored event.
        assert (frame.event, frame.id) == ("output.message.delta", None)
        body = frame.json()
        # Issue 12: the stored envelope's fields (Everruns' SDK requires `id` and `ts`), `sequence`
        # null; the id names the last stored event this reader was sent.
        assert body == {
            "id": body["id"],
            "type": "output.message.delta",
            "ts": body["ts"],
            "session_id": str(session_id),
            "sequence": None,
            "context": {"turn_id": "t1", "input_message_id": "m0", "exec_id": None},
            "data": {"message_id": "m1", "delta": "Hel"},
            "metadata": None,
            "tags": [],
        }
        assert event_log.live_position(uuid.UUID(body["id"])) == first.sequence
        reset = await stream.next()
        assert reset.event == "output.message.reset"
        assert reset.json()["id"] != body["id"]  # each frame its own id
        # They are not stored and do not move the sequence bookkeeping.
        after = await store_and_publish(db, redis_client, session_id)
        frame = await stream.next()
        assert (frame.id, frame.json()["sequence"]) == (str(after.id), 2)
    listing = (await client.get(path)).json()
    assert [e["sequence"] for e in listing["data"]] == [1, 2]


async def test_readers_at_one_position_get_one_frame_and_readers_elsewhere_their_own(
    client: Client, db: Database, redis_client: redis.Redis, server: Server
) -> None:
    """A live frame is stamped and encoded once per position (`event_stream._STAMPED`), not once per
    reader: readers that have dealt with the same stored events get the same frame, id included (a
    filter changes what is sent, not the position); a reader further on gets an id of its own,
    which resumes from where it is."""
    session_id, path = await new_session(client)
    first = await store(db, session_id)
    types = {"types": "output.message.delta"}  # `first` is filtered out: dealt with all the same
    async with (
        open_sse(server, path) as one,
        open_sse(server, path) as two,
        open_sse(server, path, params=types) as filtered,
    ):
        for stream in (one, two):
            assert (await stream.next()).json()["sequence"] == first.sequence
        # Live frames follow only a finished catch-up: once this one is read, all three are at `first`.
        await events.publish_ephemeral(
            redis_client, session_id, ev.OutputMessageDelta(message_id="m0", delta="")
        )
        for stream in (one, two, filtered):
            assert (await stream.next()).event == "output.message.delta"
        second = await store(db, session_id)  # not announced: only a reader that reads the backlog knows
        async with open_sse(server, path) as later:
            assert await _sequences(later, 2) == [first.sequence, second.sequence]
            for text in ("Hel", "lo"):
                delta = ev.OutputMessageDelta(message_id="m1", delta=text)
                await events.publish_ephemeral(redis_client, session_id, delta)
            frames = [[await stream.next() for _ in range(2)] for stream in (one, two, filtered, later)]
    mine, theirs, filtered_out, further = ([f.json() for f in pair] for pair in frames)
    assert [f["data"]["delta"] for f in mine] == ["Hel", "lo"]
    assert mine == theirs == filtered_out
    assert mine[0]["id"] != mine[1]["id"]  # each frame its own id
    assert [f["data"] for f in further] == [f["data"] for f in mine]
    assert {f["id"] for f in further}.isdisjoint(f["id"] for f in mine)
    positions = [event_log.live_position(uuid.UUID(f["id"])) for f in mine + further]
    assert positions == [first.sequence] * 2 + [second.sequence] * 2


async def test_an_event_stored_before_the_backlog_and_announced_after_it_arrives_once(
    client: Client, db: Database, redis_client: redis.Redis, server: Server
) -> None:
    session_id, path = await new_session(client)
    early = await store(db, session_id)
    async with open_sse(server, path) as stream:
        assert (await stream.next()).id == str(early.id)
        await events.publish(redis_client, early)  # the announcement comes late, after the backlog
        sentinel = await store_and_publish(db, redis_client, session_id)
        assert (await stream.next()).id == str(sentinel.id)


async def test_an_event_stored_while_the_client_connects_arrives_once(
    client: Client, db: Database, redis_client: redis.Redis, server: Server
) -> None:
    for _ in range(5):
        session_id, path = await new_session(client)
        async with open_sse(server, path) as stream:
            # Stored the moment `connected` arrives: the backlog read and the live copy race for it.
            racing = await store_and_publish(db, redis_client, session_id)
            sentinel = await store_and_publish(db, redis_client, session_id)
            assert [(await stream.next()).id for _ in range(2)] == [str(racing.id), str(sentinel.id)]


async def test_an_event_announced_ahead_of_its_predecessor_comes_after_it(
    client: Client, db: Database, redis_client: redis.Redis, server: Server
) -> None:
    session_id, path = await new_session(client)
    await store(db, session_id)
    async with open_sse(server, path) as stream:
        assert (await stream.next()).json()["sequence"] == 1
        second = await store(db, session_id)
        third = await store(db, session_id)
        await events.publish(redis_client, third)
        assert [(await stream.next()).id for _ in range(2)] == [str(second.id), str(third.id)]
        await events.publish(redis_client, second)  # the late announcement is not sent again
        fourth = await store_and_publish(db, redis_client, session_id)
        assert (await stream.next()).id == str(fourth.id)


async def test_filters_apply_to_the_backlog_live_events_and_ephemeral_frames(
    client: Client, db: Database, redis_client: redis.Redis, server: Server
) -> None:
    session_id, path = await new_session(client)
    for type_ in ("turn.started", "llm.generation", "message.agent"):
        await store(db, session_id, type_)
    params = {"types": ["turn.started,message.agent", "output.message.reset"], "exclude": "turn.started"}
    async with open_sse(server, path, params=params) as stream:
        assert (await stream.next()).event == "message.agent"
        await store_and_publish(db, redis_client, session_id, "llm.generation")
        await events.publish_ephemeral(
            redis_client, session_id, ev.OutputMessageDelta(message_id="m", delta="x")
        )
        await store_and_publish(db, redis_client, session_id, "turn.started")
        await events.publish_ephemeral(
            redis_client, session_id, ev.OutputMessageReset(message_id="m", attempt=2)
        )
        last = await store_and_publish(db, redis_client, session_id, "message.agent")
        received = [await stream.next() for _ in range(2)]
        assert [(f.event, f.id) for f in received] == [
            ("output.message.reset", None),
            ("message.agent", str(last.id)),
        ]
        assert received[1].json()["sequence"] == 6


async def test_keep_alive_comments_come_at_the_interval(
    client: Client, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert event_stream.KEEPALIVE_S == 15.0
    monkeypatch.setattr(event_stream, "KEEPALIVE_S", 0.2)
    _, path = await new_session(client)
    async with open_sse(server, path) as stream:
        started = time.monotonic()
        for _ in range(2):
            frame = await stream.next(timeout=5)
            assert (frame.comment, frame.event, frame.data) == ("keep-alive", None, None)
        assert time.monotonic() - started >= 0.35


async def test_concurrent_writers_and_connecting_clients_see_every_event_once_in_order(
    client: Client, db: Database, redis_client: redis.Redis, server: Server
) -> None:
    session_id, path = await new_session(client)
    writers, per_writer, joiners = 4, 10, 4
    total = writers * per_writer + joiners

    async def write() -> None:
        for _ in range(per_writer):
            await store_and_publish(db, redis_client, session_id)

    async def read_all() -> list[int]:
        async with open_sse(server, path) as stream:
            sequences = [(await stream.event()).json()["sequence"]]
            while sequences[-1] < total:
                sequences.append((await stream.event()).json()["sequence"])
            return sequences

    readers = [asyncio.create_task(read_all())]
    writing = [asyncio.create_task(write()) for _ in range(writers)]
    for _ in range(joiners):  # more readers connect while the writers are busy
        await store_and_publish(db, redis_client, session_id)
        readers.append(asyncio.create_task(read_all()))
    await asyncio.wait_for(asyncio.gather(*writing), 30)
    for sequences in await asyncio.wait_for(asyncio.gather(*readers), 30):
        assert sequences == list(range(1, total + 1))


async def test_a_client_leaving_releases_its_subscription_and_connections(
    client: Client, redis_client: redis.Redis, server_app: Litestar, server: Server
) -> None:
    session_id, path = await new_session(client)
    channel = events.channel(session_id)
    async with open_sse(server, path):
        assert await redis_client.pubsub_numsub(channel) == [(channel.encode(), 1)]
    # Leaving the block closed the connection and waited for the server to finish the request.
    assert await redis_client.pubsub_numsub(channel) == [(channel.encode(), 0)]
    pool = services_of(server_app).db.engine.pool
    # A read the stream was waiting on may still be finishing for the others that asked with it
    # (`services.last_sequences`): the connection comes back when it ends, within its time limit.
    deadline = asyncio.get_running_loop().time() + last_sequences.QUERY_TIMEOUT_S
    while pool.checkedout() and asyncio.get_running_loop().time() < deadline:  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_the_stream_ends_when_the_session_is_deleted(
    client: Client, db: Database, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_stream, "KEEPALIVE_S", 0.1)
    _, path = await new_session(client)
    async with open_sse(server, path) as stream:
        assert (await client.delete(path.removesuffix("/events"))).status_code == 204
        assert await stream.ended()
