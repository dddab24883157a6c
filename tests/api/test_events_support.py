"""Helpers for the test_events* modules (no tests here): the app behind a real uvicorn server, an SSE
reader over httpx, and events stored and announced the way the workers do it."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import redis.asyncio as redis
import uvicorn
from litestar import Litestar
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.types import Receive, Scope, Send

from api.state import Services
from core.db import Database
from core.db.models import Event
from everloop.stack.process import free_port
from services import events
from tests import factories
from tests.factories import Client

FRAME_TIMEOUT_S = 10.0


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class Server:
    """An app served by uvicorn; it records which requests it has finished (by X-Request-ID), so a
    test can await the server's side of a closed stream instead of guessing how long it takes."""

    def __init__(self, app: Litestar, port: int) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self._finished: set[str] = set()
        self._changed = threading.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == ScopeType.HTTP:
                request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode()
                with self._changed:
                    self._finished.add(request_id)
                    self._changed.notify_all()

    async def finished(self, request_id: str, timeout: float = FRAME_TIMEOUT_S) -> None:
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: request_id in self._finished, timeout)

        assert await asyncio.to_thread(wait), f"the server did not finish request {request_id}"

    @asynccontextmanager
    async def sse(
        self, path: str, *, headers: dict[str, str] | None = None, params: dict[str, Any] | None = None
    ) -> AsyncIterator[SSE]:
        """An open stream whose first frame was `connected`, as it must always be. Leaving closes the
        connection and waits until the server has finished with it."""
        request_id = uuid.uuid4().hex
        all_headers = {"Accept": "text/event-stream", "X-Request-ID": request_id, **(headers or {})}
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(FRAME_TIMEOUT_S)) as http,
            http.stream("GET", self.url + path, headers=all_headers, params=params) as response,
        ):
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            assert (response.headers["cache-control"], response.headers["vary"]) == ("no-cache", "Accept")
            stream = SSE(response)
            first = await stream.next()
            assert (first.event, first.id, first.json()) == ("connected", None, {"status": "connected"})
            yield stream
        await self.finished(request_id)


@asynccontextmanager
async def serve(app: Litestar) -> AsyncIterator[Server]:
    """Runs `app` on a free port in its own thread and event loop, like a separate API process."""
    port = free_port()
    server = Server(app, port)
    config = uvicorn.Config(
        server, host="127.0.0.1", port=port, log_config=None, access_log=False, timeout_graceful_shutdown=2
    )
    runner = _Uvicorn(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        if not await asyncio.to_thread(runner.ready.wait, 30):
            raise RuntimeError("uvicorn did not start within 30 s")
        yield server
    finally:
        runner.should_exit = True
        await asyncio.to_thread(thread.join, 10)


def services_of(app: Litestar) -> Services:
    provide = app.dependencies["services"]
    assert isinstance(provide, Provide)
    services = provide.dependency()
    assert isinstance(services, Services)
    return services


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


async def new_session(client: Client) -> tuple[uuid.UUID, str]:
    """A fresh session and the path of its events."""
    agent = await factories.agent(client)
    session = await factories.session(client, agent["id"])
    return uuid.UUID(session["id"]), f"/v1/agents/{agent['id']}/sessions/{session['id']}/events"


async def store(db: Database, session_id: uuid.UUID, type_: str = "test.step", **data: Any) -> Event:
    """Stores and commits one event, without announcing it."""
    async with db.session() as s:
        event = await events.append(s, session_id, type_, data)
        await s.commit()
    return event


async def store_and_publish(
    db: Database, bus: redis.Redis, session_id: uuid.UUID, type_: str = "test.step", **data: Any
) -> Event:
    event = await store(db, session_id, type_, **data)
    await events.publish(bus, event)
    return event
