"""The process's one Redis subscription (`services.event_hub`): every stream of a process shares it,
however many there are, and each learns when it stops delivering."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
import redis.asyncio as redis

from core import bus
from core.db import Database
from core.schemas import events as ev
from everloop.stack import Endpoints
from everloop.stack.process import free_port
from services import event_hub, events
from services.event_hub import Hub, Subscription, SubscriptionLost
from services.events import LiveFrame, channel
from tests.apps import app_for
from tests.conftest import make_settings
from tests.factories import Client
from tests.servers import running
from tests.sse import SSE, new_session, store_and_publish

WAIT_S = 10.0


@pytest.fixture
async def redis_client(endpoints: Endpoints) -> AsyncIterator[redis.Redis]:
    client = bus.connect(endpoints.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def hub(redis_client: redis.Redis) -> AsyncIterator[Hub]:
    hub = Hub(redis_client)
    yield hub
    await hub.close()


async def _subscribed(hub: Hub, session_id: uuid.UUID) -> Subscription:
    sub = await hub.subscribe(channel(session_id))
    assert sub is not None
    return sub


async def _delta(redis_client: redis.Redis, session_id: uuid.UUID, text: str) -> None:
    delta = ev.OutputMessageDelta(message_id="m", delta=text)
    await events.publish_ephemeral(redis_client, session_id, delta)


async def _text(sub: Subscription) -> str:
    frame = await sub.next(within=WAIT_S)
    assert isinstance(frame, LiveFrame), frame
    return str(frame.data["delta"])


async def _pubsub_clients(redis_client: redis.Redis) -> int:
    clients = await redis_client.client_list(_type="pubsub")
    return len(clients)


async def test_many_subscriptions_share_one_connection(hub: Hub, redis_client: redis.Redis) -> None:
    before = await _pubsub_clients(redis_client)
    # More sessions than redis-py's pool holds connections (100): one stream each used to need one.
    sessions = [uuid.uuid4() for _ in range(150)]
    followers = [await _subscribed(hub, s) for s in sessions]
    followers.append(await _subscribed(hub, sessions[0]))  # a second stream of the same session
    assert hub.channels == 150
    assert await _pubsub_clients(redis_client) == before + 1

    for number, session_id in enumerate(sessions):
        await _delta(redis_client, session_id, str(number))
    assert [await _text(sub) for sub in followers[:150]] == [str(n) for n in range(150)]
    assert await _text(followers[-1]) == "0"

    for sub in followers:
        await sub.aclose()
    assert hub.channels == 0


async def test_a_closed_channel_is_unsubscribed_and_can_be_joined_again(
    hub: Hub, redis_client: redis.Redis
) -> None:
    session_id = uuid.uuid4()
    name = channel(session_id)
    first = await _subscribed(hub, session_id)
    assert await redis_client.pubsub_numsub(name) == [(name.encode(), 1)]
    await first.aclose()  # the last stream of the channel leaves: Redis has confirmed it
    assert await redis_client.pubsub_numsub(name) == [(name.encode(), 0)]
    # Left and joined at once, either way round: the UNSUBSCRIBE never lands after the SUBSCRIBE.
    first = await _subscribed(hub, session_id)
    _, again = await asyncio.gather(first.aclose(), _subscribed(hub, session_id))
    await _delta(redis_client, session_id, "still here")
    assert await _text(again) == "still here"
    joined, _ = await asyncio.gather(_subscribed(hub, session_id), again.aclose())
    await _delta(redis_client, session_id, "and here")
    assert await _text(joined) == "and here"
    await joined.aclose()
    assert await redis_client.pubsub_numsub(name) == [(name.encode(), 0)]


async def test_a_lost_connection_is_told_to_every_stream_and_a_new_one_follows(
    hub: Hub, redis_client: redis.Redis
) -> None:
    one, two = uuid.uuid4(), uuid.uuid4()
    subs = [await _subscribed(hub, one), await _subscribed(hub, two)]
    await _delta(redis_client, one, "before")
    await redis_client.client_kill_filter(_type="pubsub")
    # What arrived before the loss is still delivered, then the loss is reported.
    assert await _text(subs[0]) == "before"
    for sub in subs:
        with pytest.raises(SubscriptionLost):
            await sub.next(within=WAIT_S)
        await sub.aclose()
    assert hub.channels == 0

    again = await _subscribed(hub, one)
    await _delta(redis_client, one, "after")
    assert await _text(again) == "after"


async def test_a_stream_that_stops_reading_is_dropped_alone(
    hub: Hub, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_hub, "MAX_PENDING", 5)
    session_id = uuid.uuid4()
    slow, quick = await _subscribed(hub, session_id), await _subscribed(hub, session_id)
    for number in range(6):
        await _delta(redis_client, session_id, str(number))
        assert await _text(quick) == str(number)
    with pytest.raises(SubscriptionLost):  # its five unread frames were dropped with it
        await slow.next(within=WAIT_S)
    await _delta(redis_client, session_id, "on")
    assert await _text(quick) == "on"


async def test_each_wait_ends_at_its_own_deadline_and_a_frame_ends_it_at_once(
    hub: Hub, redis_client: redis.Redis
) -> None:
    """A subscription keeps one timer across its waits (a per-wait timer cost every stream a timer per
    frame): a shorter wait after a longer one must still end on time, a longer one after a shorter
    one must not end early, and a wait given up (its stream cancelled) must lose no frame."""
    session_id = uuid.uuid4()
    sub = await _subscribed(hub, session_id)
    loop = asyncio.get_running_loop()

    async def waited(within: float) -> float:
        started = loop.time()
        assert await sub.next(within=within) is None
        return loop.time() - started

    assert 0.2 <= await waited(0.2) < 5.0
    long_wait = asyncio.create_task(sub.next(within=30.0))  # leaves a timer 30 s ahead
    await asyncio.sleep(0)  # waiting now: the timer is set
    long_wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long_wait
    assert 0.3 <= await waited(0.3) < 5.0  # the earlier deadline moved the timer
    short_wait = asyncio.create_task(sub.next(within=0.2))
    await asyncio.sleep(0)
    short_wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        await short_wait
    assert await waited(0.6) >= 0.6  # the 0.2 s timer left behind fires early and moves on
    assert await sub.next(within=0) is None  # nothing pending: no wait at all

    given_up = asyncio.create_task(sub.next(within=30.0))
    await asyncio.sleep(0)
    given_up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await given_up
    await _delta(redis_client, session_id, "kept")  # delivered with no wait under way: kept for the next
    assert await _text(sub) == "kept"

    waiting = asyncio.create_task(_text(sub))  # a frame, not a timer, ends this wait
    await asyncio.sleep(0)
    await _delta(redis_client, session_id, "now")
    assert await waiting == "now"
    await sub.aclose()


async def test_without_redis_subscribe_says_so() -> None:
    nowhere = bus.connect(f"redis://127.0.0.1:{free_port()}/0")
    hub = Hub(nowhere)
    try:
        assert await hub.subscribe(channel(uuid.uuid4())) is None
        assert hub.channels == 0
    finally:
        await hub.close()
        await nowhere.aclose()


async def test_one_api_process_serves_more_streams_than_the_redis_pool_holds(
    client: Client, db: Database, endpoints: Endpoints, redis_client: redis.Redis
) -> None:
    """Past 100 streams, each holding a pooled connection, streams polled PostgreSQL and `/ready`
    failed: every stream now shares the process's one subscription."""
    app = app_for(make_settings(endpoints), configure_logs=False)
    session_id, path = await new_session(client)
    count = 120
    async with (
        running(app) as server,
        httpx.AsyncClient(
            base_url=server.url, timeout=WAIT_S, limits=httpx.Limits(max_connections=count + 10)
        ) as http,
        AsyncExitStack() as streams,
    ):
        readers = []
        for _ in range(count):
            response = await streams.enter_async_context(
                http.stream("GET", path, headers={"Accept": "text/event-stream"})
            )
            assert response.status_code == 200
            readers.append(SSE(response))
        firsts = await asyncio.gather(*(r.next() for r in readers))
        assert {f.event for f in firsts} == {"connected"}

        event = await store_and_publish(db, redis_client, session_id)
        # The next frame of every stream is the event: no "redis unavailable: polling" comment first.
        seen = await asyncio.gather(*(r.next() for r in readers))
        assert {(f.comment, f.id) for f in seen} == {(None, str(event.id))}
        assert (await http.get("/ready")).status_code == 200


async def test_a_join_when_nothing_is_followed_and_a_health_check_is_due_still_subscribes(
    hub: Hub, redis_client: redis.Redis
) -> None:
    """redis-py sends a command on a pub/sub connection that follows nothing with a health-check
    PING and reads its answer in the sending task, beside the hub's reader: "readuntil() called
    while another coroutine is already waiting". The hub's own channel keeps it following one."""
    first = await _subscribed(hub, uuid.uuid4())
    await first.aclose()  # nothing of the streams' is followed now
    assert hub.channels == 0
    await asyncio.sleep(0.1)  # the reader back in its read (nothing to await for that: it is inside redis-py)
    connection = hub._pubsub.connection if hub._pubsub is not None else None
    assert connection is not None
    connection.next_health_check = 0  # as if 30 s had passed since its last answer
    session_id = uuid.uuid4()
    sub = await _subscribed(hub, session_id)
    await _delta(redis_client, session_id, "followed")
    assert await _text(sub) == "followed"


async def test_a_closed_hub_opens_no_new_connection(hub: Hub, redis_client: redis.Redis) -> None:
    sub = await _subscribed(hub, uuid.uuid4())
    await hub.close()
    with pytest.raises(SubscriptionLost):
        await sub.next(within=WAIT_S)
    # A stream still open at shutdown that tries again gets "cannot subscribe", not a new connection.
    assert await hub.subscribe(channel(uuid.uuid4())) is None
    assert hub._pubsub is None
