"""Two API processes, one SSE client each, one turn: both see the same events in the same order."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests import factories
from tests.apps import app_for
from tests.loop.conftest import TURN_ENDS, Loop
from tests.servers import running
from tests.sse import SSE


async def _follow(url: str, path: str, ready: asyncio.Event) -> list[dict[str, Any]]:
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("GET", path, headers={"accept": "text/event-stream"}) as stream,
    ):
        sse = SSE(stream)
        assert (await sse.event()).event == "connected"
        ready.set()
        seen: list[dict[str, Any]] = []
        while True:
            frame = await sse.event(30)
            if frame.id is not None:  # stored events only; live deltas may be dropped by design
                seen.append(frame.json())
                if seen[-1]["type"] in TURN_ENDS:
                    return seen


async def test_two_api_processes_stream_the_same_sequence(loop: Loop) -> None:
    script = [{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 1}}] * 2}, "2 and 2"]
    base = await loop.chat(simulator={"mode": "script", "script": script}, capabilities=["test_math"])
    second_app = app_for(loop.settings, configure_logs=False)
    with running(second_app) as second:
        ready = [asyncio.Event(), asyncio.Event()]
        followers = [
            asyncio.create_task(_follow(str(loop.client.base_url), f"{base}/events", ready[0])),
            asyncio.create_task(_follow(second.url, f"{base}/events", ready[1])),
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 10)
        response = await loop.client.post(f"{base}/messages", json=factories.text_message("go"))
        assert response.status_code == 201
        first, other = await asyncio.wait_for(asyncio.gather(*followers), 60)
    assert [e["sequence"] for e in first] == [e["sequence"] for e in other]
    assert [e["id"] for e in first] == [e["id"] for e in other]
    assert [e["sequence"] for e in first] == list(range(1, len(first) + 1))
    assert [e["type"] for e in first].count("tool.call_completed") == 2
