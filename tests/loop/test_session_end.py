"""Opswald's `POST /v1/sessions/{id}/end` on an agent session mid-turn: the turn stops as cancel
stops it, and the session takes no new message."""

from __future__ import annotations

import asyncio

from tests import factories
from tests.loop.conftest import Loop


async def test_ending_a_session_stops_its_turn_and_closes_it(loop: Loop) -> None:
    text = " ".join(f"word{i}" for i in range(100))
    base = await loop.chat(simulator={"mode": "fixed", "text": text, "chunk_delay": 0.3})
    session_id = base.rsplit("/", 1)[1]
    sending = asyncio.create_task(loop.send(base, "talk slowly"))
    while not any(e.type == "reason.started" for e in await loop.stored(base)):
        await asyncio.sleep(0.05)
    ended = await loop.client.post(f"/v1/sessions/{session_id}/end")
    assert ended.status_code == 200, ended.text
    assert ended.json()["turn_cancelled"] is True and ended.json()["kind"] == "agent"
    frames = await asyncio.wait_for(sending, 10)
    assert frames[-1]["type"] == "turn.cancelled"
    refused = await loop.client.post(f"{base}/messages", json=factories.text_message("again"))
    assert refused.status_code == 409
    # The turn's trace ended with it, and Opswald's view says the session is over.
    listing = (await loop.client.get("/v1/sessions", params={"active": "false"})).json()
    mine = [s for s in listing["sessions"] if s["session_id"] == session_id]
    assert mine and mine[0]["status"] == "completed" and mine[0]["trace_count"] == 1
