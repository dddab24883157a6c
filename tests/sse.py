"""SSE in tests: a reader over httpx (`SSE`), a stream opened on a real server (`open_sse`), and
events stored and announced the way the workers do it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import redis.asyncio as redis

from core.db import Database
from core.db.models import Event
from services import events
from tests import factories
from tests.factories import Client
from tests.servers import Server

FRAME_TIMEOUT_S = 10.0


class Frame(msgspec.Struct, kw_only=True):
    event: str | None = None
    id: str | None = None
    data: str | None = None
    comment: str | None = None

    def json(self) -> Any:
        assert self.data is not None, self
        return msgspec.json.decode(self.data)


class SSE:
    """Reads one frame at a time; every read has a timeout, so a missing frame fails fast."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = FRAME_TIMEOUT_S) -> Frame:
        return await asyncio.wait_for(self._read(), timeout)

    async def _read(self) -> Frame:
        fields: dict[str, str] = {}
        while True:
            line = await anext(self._lines)
            if line == "":
                if fields:
                    return Frame(**fields)
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                fields["comment"] = value
            else:
                fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value

    async def event(self, timeout: float = FRAME_TIMEOUT_S) -> Frame:
        """The next frame that is not a comment."""
        while (frame := await self.next(timeout)).comment is not None:
            pass
        return frame

    async def until_comment(self, text: str, timeout: float = FRAME_TIMEOUT_S) -> list[Frame]:
        """Reads up to the comment `text`; returns the frames before it, keep-alives left out."""
        skipped: list[Frame] = []
        while (frame := await self.next(timeout)).comment != text:
            if frame.comment != "keep-alive":
                skipped.append(frame)
        return skipped

    async def ended(self, timeout: float = FRAME_TIMEOUT_S) -> bool:
        """True once the server closes the stream (comment frames before that are skipped)."""
        try:
            while True:
                await self.next(timeout)
        except StopAsyncIteration:
            return True


@asynccontextmanager
async def open_sse(
    server: Server, path: str, *, headers: dict[str, str] | None = None, params: dict[str, Any] | None = None
) -> AsyncIterator[SSE]:
    """An open stream from `server` whose first frame was `connected`, as it must always be. Leaving
    closes the connection and waits until the server has finished with it."""
    request_id = uuid.uuid4().hex
    all_headers = {"Accept": "text/event-stream", "X-Request-ID": request_id, **(headers or {})}
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(FRAME_TIMEOUT_S)) as http,
        http.stream("GET", server.url + path, headers=all_headers, params=params) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert (response.headers["cache-control"], response.headers["vary"]) == ("no-cache", "Accept")
        stream = SSE(response)
        first = await stream.next()
        assert (first.event, first.id, first.json()) == ("connected", None, {"status": "connected"})
        yield stream
    await server.finished(request_id, FRAME_TIMEOUT_S)


async def new_session(client: Client) -> tuple[uuid.UUID, str]:
    """A fresh session and the path of its events."""
    agent = await factories.agent(client)
    session = await factories.session(client, agent["id"])
    return uuid.UUID(session["id"]), f"/v1/agents/{agent['id']}/sessions/{session['id']}/events"


async def store(db: Database, session_id: uuid.UUID, type_: str = "test.step", **data: Any) -> Event:
    """Stores and commits one event, without announcing it. Any type, any data: the log and the stream
    carry whatever is stored (the loop's own events are the contract's, tests/loop/test_event_contract.py)."""
    async with db.session() as s:
        sequence = await events.next_sequence(s, session_id, "last_event_sequence")
        event = Event(session_id=session_id, sequence=sequence, type=type_, data=data, context={})
        s.add(event)
        await s.commit()
    return event


async def store_and_publish(
    db: Database, bus: redis.Redis, session_id: uuid.UUID, type_: str = "test.step", **data: Any
) -> Event:
    event = await store(db, session_id, type_, **data)
    await events.publish(bus, event)
    return event
