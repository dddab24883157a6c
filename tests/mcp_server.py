"""An MCP server for the tests, from the official SDK: `build()` for streamable HTTP (served on
loopback by `serve_http`), or run as a script for stdio (`stdio_command()`)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.requests import Request
from starlette.responses import PlainTextResponse

# Runs of the `slow` tool by label, for tests that must know whether a tool ran once or again
# (the HTTP server runs in the test's own process).
SLOW_RUNS: dict[str, list[str]] = {}
# Runs of the `count` tool by label: a fork must never run an earlier step's tool again.
COUNTS: dict[str, int] = {}


def build(name: str = "test-tools") -> MCPServer:
    server: MCPServer = MCPServer(name, log_level="WARNING", warn_on_duplicate_tools=False)

    @server.tool()
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    @server.tool()
    def count(label: str) -> int:
        """Counts its runs under `label`; returns the count so far."""
        COUNTS[label] = COUNTS.get(label, 0) + 1
        return COUNTS[label]

    @server.tool()
    def shout(text: str) -> str:
        """The text in capitals."""
        return text.upper()

    @server.tool(name="lookup.v2")
    def lookup() -> str:
        """A tool whose name is not valid for LLM APIs as it is."""
        return "found by its exact name"

    @server.tool()
    def fail() -> str:
        """Always fails, with a message for the model."""
        raise ToolError("the tool broke on purpose")

    @server.tool()
    async def hang() -> str:
        """Never answers."""
        await asyncio.Event().wait()
        return "never"

    @server.tool()
    async def slow(label: str, seconds: float) -> str:
        """Takes `seconds`; every run is counted under `label` in SLOW_RUNS (started, finished)."""
        SLOW_RUNS.setdefault(label, []).append("started")
        await asyncio.sleep(seconds)
        SLOW_RUNS[label].append("finished")
        return f"{label} done after {seconds:g} s"

    @server.tool()
    def die() -> str:
        """Ends the server's process mid-call (stdio only)."""
        os._exit(3)

    @server.custom_route("/health", methods=["GET"])  # type: ignore[untyped-decorator]
    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return server


@dataclass
class Recorder:
    """An ASGI wrapper that remembers the headers of every request it passes on."""

    app: Any
    headers: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await self.app(scope, receive, send)


@contextmanager
def serve_http() -> Iterator[tuple[str, Recorder]]:
    """A fresh server on a loopback port: its MCP URL and the request recorder."""
    from tests.servers import running

    recorder = Recorder(build().streamable_http_app())
    with running(recorder) as server:
        yield f"{server.url}/mcp", recorder


def stdio_command() -> dict[str, Any]:
    """`command` and `args` that run this file as a stdio MCP server."""
    return {"command": sys.executable, "args": [str(Path(__file__).resolve())]}


if __name__ == "__main__":
    build().run("stdio")
