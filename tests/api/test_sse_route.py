"""Issue 12: where Everruns' clients read a session's events. `GET .../sse` (nested and flat) streams
whatever the `Accept`; `GET /v1/sessions/{id}/events` is the nested list's flat twin; the list pages
with `after_sequence` and `before_sequence`, the stream starts at `after_sequence`; bad cursors are
400s naming them. Through a real uvicorn server where a stream is read."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from everruns_sdk import AgentClient
from litestar import Litestar

from core import bus
from core.db import Database
from core.db.models import Event
from core.schemas import events as ev
from core.settings import Settings
from everloop.stack import Endpoints
from services import event_log, events
from tests.apps import app_for
from tests.factories import Client
from tests.servers import Server, running
from tests.sse import new_session, open_sse, store, store_and_publish


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


def _paths(events_path: str) -> dict[str, str]:
    """The four routes of one session: nested and flat, list and stream."""
    session_id = events_path.split("/")[5]
    nested = events_path.removesuffix("/events")
    flat = f"/v1/sessions/{session_id}"
    return {
        "nested_events": f"{nested}/events",
        "nested_sse": f"{nested}/sse",
        "flat_events": f"{flat}/events",
        "flat_sse": f"{flat}/sse",
    }


async def _stored(db: Database, session_id: uuid.UUID, count: int) -> list[Event]:
    return [await store(db, session_id, f"step.{i}", n=i) for i in range(1, count + 1)]


async def _sequences(client: Client, path: str, **params: Any) -> list[int]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return [e["sequence"] for e in response.json()["data"]]


@pytest.mark.parametrize("route", ["nested_sse", "flat_sse"])
async def test_sse_streams_whatever_the_accept(
    client: Client, db: Database, redis_client: redis.Redis, server: Server, route: str
) -> None:
    session_id, events_path = await new_session(client)
    stored = await _stored(db, session_id, 3)
    path = _paths(events_path)[route]
    for accept in ("text/event-stream", "*/*", "application/json"):
        async with open_sse(server, path, headers={"Accept": accept}) as stream:
            backlog = [await stream.next() for _ in range(3)]
            assert [(f.event, f.id) for f in backlog] == [(e.type, str(e.id)) for e in stored]
            assert backlog[0].json() == (await client.get(events_path)).json()["data"][0]
            # A proxy in front (nginx) must pass each frame on at once, not buffer the stream.
            assert stream.response.headers["x-accel-buffering"] == "no"
    async with open_sse(server, path, headers={"Last-Event-ID": str(stored[0].id)}) as stream:
        assert (await stream.next()).id == str(stored[1].id)
        assert (await stream.next()).id == str(stored[2].id)
        live = await store_and_publish(db, redis_client, session_id, "step.live")
        await events.publish_ephemeral(
            redis_client, session_id, ev.OutputMessageDelta(message_id="m", delta="x")
        )
        assert (await stream.next()).id == str(live.id)
        delta = await stream.next()
        assert delta.event == "output.message.delta" and delta.json()["sequence"] is None


async def test_the_flat_list_is_the_nested_one(client: Client, db: Database) -> None:
    session_id, events_path = await new_session(client)
    await _stored(db, session_id, 4)
    paths = _paths(events_path)
    for params in (
        {},
        {"after_sequence": 1, "limit": 2},
        {"before_sequence": 4, "limit": 2},
        {"types": "step.2"},
    ):
        nested = await client.get(paths["nested_events"], params=params)
        flat = await client.get(paths["flat_events"], params=params)
        assert nested.status_code == flat.status_code == 200, (nested.text, flat.text)
        assert flat.json() == nested.json()
        assert flat.headers["vary"] == "Accept"


async def test_flat_routes_of_an_unknown_session_are_404(server: Server) -> None:
    unknown = f"/v1/sessions/{uuid.uuid4()}"
    for path in (f"{unknown}/events", f"{unknown}/sse"):
        for accept in ("application/json", "text/event-stream"):
            async with httpx.AsyncClient(base_url=server.url) as http:
                response = await http.get(path, headers={"Accept": accept})
            assert response.status_code == 404, (path, accept, response.text)
            assert response.headers["content-type"].startswith("application/json")


async def test_the_list_pages_forward_after_a_sequence(client: Client, db: Database) -> None:
    session_id, path = await new_session(client)
    await _stored(db, session_id, 6)
    assert await _sequences(client, path, after_sequence=0) == [1, 2, 3, 4, 5, 6]
    assert await _sequences(client, path, after_sequence=2) == [3, 4, 5, 6]
    assert await _sequences(client, path, after_sequence=2, limit=2) == [3, 4]
    assert await _sequences(client, path, after_sequence=2, limit=2, offset=2) == [5, 6]
    assert await _sequences(client, path, after_sequence=6) == []
    assert await _sequences(client, path, after_sequence=99) == []  # a page past the end: empty
    body = (await client.get(path, params={"after_sequence": 2, "limit": 2})).json()
    assert (body["total"], body["offset"], body["limit"]) == (4, 0, 2)
    # Filters apply inside the window.
    assert await _sequences(client, path, after_sequence=1, exclude="step.3") == [2, 4, 5, 6]


async def test_the_list_pages_backward_before_a_sequence(client: Client, db: Database) -> None:
    session_id, path = await new_session(client)
    await _stored(db, session_id, 6)
    # The newest `limit` before it, oldest first (as Everruns' SDK pages back).
    assert await _sequences(client, path, before_sequence=5, limit=2) == [3, 4]
    assert await _sequences(client, path, before_sequence=5, limit=2, offset=2) == [1, 2]
    assert await _sequences(client, path, before_sequence=5) == [1, 2, 3, 4]
    assert await _sequences(client, path, before_sequence=1) == []
    assert await _sequences(client, path, before_sequence=99, limit=3) == [4, 5, 6]  # the newest 3
    body = (await client.get(path, params={"before_sequence": 5, "limit": 2})).json()
    assert (body["total"], body["offset"], body["limit"]) == (4, 0, 2)
    # Both cursors: the range between them.
    assert await _sequences(client, path, after_sequence=1, before_sequence=5) == [2, 3, 4]
    assert await _sequences(client, path, after_sequence=1, before_sequence=5, limit=2) == [3, 4]
    stored = await client.get(path)
    second = stored.json()["data"][1]["id"]
    assert await _sequences(client, path, since_id=second, before_sequence=5) == [3, 4]
    # The seed's paging is unchanged: `limit` alone is the first page.
    assert await _sequences(client, path, limit=2) == [1, 2]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after_sequence": -1}, "after_sequence"),
        ({"before_sequence": -5}, "before_sequence"),
        ({"after_sequence": "three"}, "after_sequence"),
        ({"before_sequence": "1.5"}, "before_sequence"),
        ({"after_sequence": 2**31}, "after_sequence"),
        ({"after_sequence": 4, "before_sequence": 4}, "before_sequence"),
        ({"after_sequence": 5, "before_sequence": 2}, "before_sequence"),
        ({"after_sequence": 1, "since_id": "SINCE"}, "after_sequence"),
        ({"limit": 0}, "limit"),
    ],
)
async def test_bad_list_cursors_are_400_naming_them(
    client: Client, db: Database, params: dict[str, Any], field: str
) -> None:
    session_id, events_path = await new_session(client)
    first = (await _stored(db, session_id, 1))[0]
    params = {k: (str(first.id) if v == "SINCE" else v) for k, v in params.items()}
    for route in ("nested_events", "flat_events"):
        response = await client.get(_paths(events_path)[route], params=params)
        assert response.status_code == 400, (route, params, response.text)
        assert response.json()["field"] == field, response.text


async def test_the_stream_starts_after_a_sequence(
    client: Client, db: Database, redis_client: redis.Redis, server: Server
) -> None:
    session_id, events_path = await new_session(client)
    stored = await _stored(db, session_id, 4)
    for route in ("nested_sse", "flat_sse", "nested_events"):
        path = _paths(events_path)[route]
        async with open_sse(server, path, params={"after_sequence": 2}) as stream:
            assert [(await stream.next()).id for _ in range(2)] == [str(e.id) for e in stored[2:4]]
        async with open_sse(server, path, params={"after_sequence": 0}) as stream:
            assert (await stream.next()).id == str(stored[0].id)
        async with open_sse(server, path, params={"after_sequence": len(stored)}) as stream:
            # Nothing stored after it: the next frame is the next event.
            live = await store_and_publish(db, redis_client, session_id, "step.live")
            assert (await stream.next()).id == str(live.id)
        stored.append(live)
    # A resume cursor wins over the first position, as when the SDK reconnects: Last-Event-ID, then
    # since_id, then after_sequence.
    path = _paths(events_path)["flat_sse"]
    async with open_sse(server, path, params={"after_sequence": 1, "since_id": str(stored[2].id)}) as stream:
        assert (await stream.next()).id == str(stored[3].id)
    headers = {"Last-Event-ID": str(stored[4].id)}
    async with open_sse(
        server, path, headers=headers, params={"after_sequence": 1, "since_id": str(stored[2].id)}
    ) as stream:
        assert (await stream.next()).id == str(stored[5].id)


async def test_the_stream_filters_with_repeated_types_and_exclude(
    client: Client, db: Database, server: Server
) -> None:
    session_id, events_path = await new_session(client)
    for type_ in ("turn.started", "llm.generation", "message.agent", "turn.completed"):
        await store(db, session_id, type_)
    params = {"types": ["turn.started", "message.agent", "turn.completed"], "exclude": ["turn.started"]}
    async with open_sse(server, _paths(events_path)["flat_sse"], params=params) as stream:
        assert [(await stream.next()).event for _ in range(2)] == ["message.agent", "turn.completed"]


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({"after_sequence": -1}, {}, "after_sequence"),
        ({"after_sequence": "x"}, {}, "after_sequence"),
        ({"after_sequence": 3}, {}, "after_sequence"),  # past the session's last event (2)
        ({"since_id": str(uuid.uuid4())}, {}, "since_id"),
        ({"since_id": "not-an-id"}, {}, "since_id"),
        ({}, {"Last-Event-ID": "garbage"}, "Last-Event-ID"),
        ({"types": "a b"}, {}, "types"),
    ],
)
async def test_bad_stream_positions_are_400_before_it_starts(
    client: Client, db: Database, params: dict[str, Any], headers: dict[str, str], field: str
) -> None:
    session_id, events_path = await new_session(client)
    await _stored(db, session_id, 2)
    for route in ("nested_sse", "flat_sse"):
        response = await client.get(_paths(events_path)[route], params=params, headers=headers)
        assert response.status_code == 400, (route, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["field"] == field


async def test_a_live_id_names_a_position_of_its_session(client: Client, db: Database) -> None:
    """A live frame's id resumes after the sequence it names, in the list as on the stream; one that
    names a position the session has not reached is a 400 like any unknown id."""
    session_id, events_path = await new_session(client)
    await _stored(db, session_id, 3)
    live = event_log.live_id(1)
    assert live.version == 8 and event_log.live_position(live) == 1
    assert event_log.live_position(uuid.UUID(int=live.int)) == 1
    assert event_log.live_position(uuid.uuid4()) is None
    assert len({event_log.live_id(1) for _ in range(1000)}) == 1000
    assert await _sequences(client, events_path, since_id=str(live)) == [2, 3]
    assert await _sequences(client, events_path, since_id=str(event_log.live_id(0))) == [1, 2, 3]
    ahead = await client.get(events_path, params={"since_id": str(event_log.live_id(4))})
    assert ahead.status_code == 400 and ahead.json()["field"] == "since_id"


async def test_the_agent_clients_last_sequence_pages_to_the_end(
    client: Client, db: Database, server: Server
) -> None:
    """`AgentClient.run()` on a session finds its newest event by listing with `after_sequence` until
    a page comes back empty (pages of 50 here): it must end, at the last sequence."""
    session_id, events_path = await new_session(client)
    await _stored(db, session_id, 120)
    agent_id = events_path.split("/")[3]
    for agent_url in (f"{server.url}/v1/agents/{agent_id}", f"{server.url}/v1"):
        async with AgentClient(agent_url=agent_url, credential="unused in AUTH_MODE=none") as agent:
            assert await agent._last_sequence(str(session_id)) == 120
            listed = await agent.list_events(str(session_id), after_sequence=100, limit=5)
            assert [e.sequence for e in listed] == [101, 102, 103, 104, 105]
