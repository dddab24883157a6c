"""A real HTTP server on 127.0.0.1 that receives webhooks: it records each request (headers and
body) and answers each as its plan says, in order: a status code, `drop` (close the connection
without answering), or `hold` (keep the request open until `release()`). Past the plan: 200."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

Action = int | str  # a status code, "drop" or "hold"


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # names lower-cased
    body: bytes
    path: str

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


class Receiver:
    def __init__(self, plan: Iterable[Action] = ()) -> None:
        self.plan = list(plan)
        self.requests: list[Received] = []
        self._arrived = asyncio.Condition()
        self._released = asyncio.Event()
        self.url = ""

    def release(self) -> None:
        self._released.set()

    async def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """Until `count` requests have arrived; all of them so far."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                action: Action = self.plan.pop(0) if self.plan else 200
                async with self._arrived:
                    self.requests.append(Received(headers, body, path))
                    self._arrived.notify_all()
                if action == "drop":
                    return
                if action == "hold":
                    await self._released.wait()
                    action = 200
                status = int(action)
                answer = b"ok" if status < 300 else b"receiver says no"
                head_out = f"HTTP/1.1 {status} X\r\ncontent-length: {len(answer)}\r\ncontent-type: text/plain"
                writer.write(f"{head_out}\r\n\r\n".encode() + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def receiving(plan: Iterable[Action] = ()) -> AsyncIterator[Receiver]:
    receiver = Receiver(plan)
    server = await asyncio.start_server(receiver._handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    receiver.url = f"http://127.0.0.1:{port}/hooks"
    try:
        yield receiver
    finally:
        receiver.release()
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
