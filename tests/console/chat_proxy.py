"""A TCP proxy between the browser and the API that can drop every open connection at once: a
network cut as the browser sees it (its streams and requests end mid-way), while the server and the
turn go on. It notes each request line that passes, so a test can tell that the page came back."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

REQUEST_LINE = re.compile(rb"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (\S+) HTTP/1\.[01]\r\n")


class CuttableProxy:
    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        assert parts.hostname and parts.port, target
        self._host, self._port = parts.hostname, parts.port
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self.requests: list[str] = []  # the paths (with their queries) of the requests that passed
        self.url = ""

    def paths_like(self, pattern: str) -> list[str]:
        return [path for path in self.requests if re.search(pattern, path)]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def cut(self) -> int:
        """Drops every open connection, both ways, without a goodbye; answers how many."""
        writers = list(self._open)
        for writer in writers:
            writer.transport.abort()
        self._open.clear()
        return len(writers)

    async def close(self) -> None:
        self.cut()
        if self._server:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pumps):
            task.cancel()
        for task in list(self._pumps):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            client_writer.transport.abort()
            return
        self._open.update((client_writer, server_writer))
        up = asyncio.create_task(self._pump(client_reader, server_writer, sniff=True))
        down = asyncio.create_task(self._pump(server_reader, client_writer, sniff=False))
        self._pumps.update((up, down))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for writer in (client_writer, server_writer):
                self._open.discard(writer)
                writer.transport.abort()
            for task in (up, down):
                task.cancel()
                self._pumps.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, sniff: bool) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                if sniff:
                    # Requests are small and sent whole on loopback: a request line is in one chunk.
                    self.requests.extend(m.group(1).decode() for m in REQUEST_LINE.finditer(chunk))
                writer.write(chunk)
                await writer.drain()


@asynccontextmanager
async def proxy_to(target: str) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy(target)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
