"""An SSE client in a process of its own, for tests/bench/token_latency.py: it follows one session's
event stream and writes each frame to stdout as a JSON line with the moment its last byte arrived.

    .venv/bin/python -m tests.bench.sse_probe URL

A process of its own, importing only httpx and msgspec, so that neither the worker nor the API
shares its interpreter (and GIL) with the client that times them. `at_ns` is `time.monotonic_ns()`
(CLOCK_MONOTONIC: one clock for every process of the machine), `wall_ns` is `time.time_ns()`. The
first line is `{"type": "connected"}`, written once the API's `connected` frame says its
subscription is in place.
"""

from __future__ import annotations

import asyncio
import sys
import time

import httpx
import msgspec


class Line(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    at_ns: int = 0
    wall_ns: int = 0
    data: str = ""


async def follow(url: str) -> None:
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    timeout = httpx.Timeout(30.0, read=None)
    async with (
        httpx.AsyncClient(timeout=timeout) as http,
        http.stream("GET", url, headers={"Accept": "text/event-stream"}) as response,
    ):
        response.raise_for_status()
        buffer = b""
        # Raw bytes, timed as they arrive: a frame's moment is that of the read that completed it.
        async for raw in response.aiter_raw():
            at_ns, wall_ns = time.monotonic_ns(), time.time_ns()
            # Litestar ends its lines with CRLF.
            buffer = (buffer + raw).replace(b"\r\n", b"\n")
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                kind, data = "", ""
                for line in frame.decode().splitlines():
                    name, _, value = line.partition(":")
                    if name == "event":
                        kind = value.strip()
                    elif name == "data":
                        data = value.removeprefix(" ")
                if not kind:
                    continue  # a comment (keep-alive)
                out.write(encoder.encode(Line(type=kind, at_ns=at_ns, wall_ns=wall_ns, data=data)) + b"\n")
                out.flush()


def main() -> int:
    try:
        asyncio.run(follow(sys.argv[1]))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
