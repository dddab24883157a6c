"""Cancel and inspect a session's loop."""

from __future__ import annotations

import asyncio
import time

from tests.loop.conftest import Loop


async def test_cancel_mid_stream_stops_the_turn(loop: Loop) -> None:
    # A slow stream: 0.3 s between words, so the turn is surely running when we cancel.
    text = " ".join(f"word{i}" for i in range(100))
    base = await loop.chat(simulator={"mode": "fixed", "text": text, "chunk_delay": 0.3})
    sending = asyncio.create_task(loop.send(base, "talk slowly"))
    # Wait for the first streamed delta, not a guess.
    while not any(e.type == "reason.started" for e in await loop.stored(base)):
        await asyncio.sleep(0.05)
    started = time.monotonic()
    response = await loop.client.post(f"{base}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["cancelled"] is True
    frames = await asyncio.wait_for(sending, 10)
    assert frames[-1]["type"] == "turn.cancelled"
    assert time.monotonic() - started < 5
    stored = await loop.stored(base)
    types = [e.type for e in stored]
    assert types[-2:] == ["turn.cancelled", "session.idled"]
    assert "message.agent" not in types
    assert (await loop.client.get(base)).json()["status"] == "idle"
    # The reason activity really stopped: the workflow has nothing pending.
    info = (await loop.client.get(f"{base}/workflow")).json()
    assert info["pending_activities"] == []
    # Nothing runs now.
    again = await loop.client.post(f"{base}/cancel")
    assert again.status_code == 409


async def test_cancel_with_no_turn_is_409(loop: Loop) -> None:
    base = await loop.chat()
    response = await loop.client.post(f"{base}/cancel")
    assert response.status_code == 409
    assert response.json()["error"] == "no turn is running in this session"


async def test_the_next_turn_after_a_cancel_works_and_sees_no_dangling_call(loop: Loop) -> None:
    script = [
        {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 1}}]},
        "two",
    ]
    base = await loop.chat(
        simulator={"mode": "script", "script": script, "chunk_delay": 0.2}, capabilities=["test_math"]
    )
    sending = asyncio.create_task(loop.send(base, "first"))
    while not any(e.type == "reason.started" for e in await loop.stored(base)):
        await asyncio.sleep(0.05)
    assert (await loop.client.post(f"{base}/cancel")).status_code == 200
    await asyncio.wait_for(sending, 10)
    await loop.send(base, "again")
    messages = await loop.messages(base)
    assert messages[-1]["role"] == "agent"


async def test_workflow_inspection(loop: Loop) -> None:
    base = await loop.chat()
    before = (await loop.client.get(f"{base}/workflow")).json()
    assert before["status"] == "NOT_STARTED" and before["runs"] == []
    await loop.send(base, "one")
    await loop.send(base, "two")
    info = (await loop.client.get(f"{base}/workflow")).json()
    session_id = base.rsplit("/", 1)[1]
    assert info["workflow_id"] == f"session-{session_id}"
    assert info["status"] == "RUNNING"
    assert info["pending_activities"] == []
    assert info["history_length"] < 50  # continued as new after each turn
    assert info["run_id"] in {r["run_id"] for r in info["runs"]}
    assert "CONTINUED_AS_NEW" in {r["status"] for r in info["runs"]}
