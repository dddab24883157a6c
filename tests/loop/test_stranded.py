"""A turn whose workflow ends without closing it (terminated, failed) is closed by the sweeper with
`turn.failed`; a turn that is still running is left alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import redis.asyncio as redis

from core import bus
from core.db.models import Event
from everloop.sweeper import close_stranded, sweep_once
from tests.loop.conftest import TURN_ENDS, Loop

SLOW = {"mode": "fixed", "text": " ".join(f"w{i}" for i in range(200)), "chunk_delay": 0.05}


@pytest.fixture
async def publisher(loop: Loop) -> AsyncIterator[redis.Redis]:
    connection = bus.connect(loop.endpoints.redis_url)
    yield connection
    await connection.aclose()


async def until(loop: Loop, base: str, kind: str) -> list[Event]:
    """The session's stored events once one of type `kind` is among them."""
    async with asyncio.timeout(60):
        while True:
            stored = await loop.stored(base)
            if any(e.type == kind for e in stored):
                return stored
            await asyncio.sleep(0.05)


async def sweep(loop: Loop, publisher: redis.Redis) -> int:
    return await close_stranded(loop.db, loop.temporal, publisher, grace=timedelta(0))


async def answer_quickly(loop: Loop, base: str) -> None:
    """The session's model answers at once from now on: only the first turn needs to be slow."""
    await answer_with(loop, base, {"mode": "echo"})


async def answer_with(loop: Loop, base: str, settings: dict[str, object]) -> None:
    """The session's model answers with these simulator `settings` from its next call on."""
    agent = (await loop.client.get(base.rsplit("/sessions/", 1)[0])).json()
    model = agent["default_model_id"]
    patched = await loop.client.patch(f"/v1/llm-models/{model}", json={"settings": settings})
    assert patched.status_code == 200, patched.text


async def test_a_terminated_turn_is_closed_once_and_the_session_goes_on(
    loop: Loop, publisher: redis.Redis
) -> None:
    base = await loop.chat(simulator=SLOW)
    agent_id, session_id = base.split("/")[3], base.split("/")[5]
    await loop.send(base, "speak slowly", wait=False)
    await until(loop, base, "reason.started")
    # Running: the sweep asks the workflow, which runs this very turn.
    assert await sweep(loop, publisher) == 0
    await loop.temporal.get_workflow_handle(f"session-{session_id}").terminate("an operator's mistake")
    assert await sweep(loop, publisher) == 1
    # A second sweep (another worker's) finds nothing more to close.
    assert await sweep(loop, publisher) == 0

    stored = await loop.stored(base)
    ends = [e for e in stored if e.type in TURN_ENDS]
    assert [(e.type, e.data["error_code"]) for e in ends] == [("turn.failed", "turn_interrupted")]
    assert "terminated" in ends[0].data["error"]
    assert stored[-1].type == "session.idled"
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))
    session = (await loop.client.get(f"/v1/agents/{agent_id}/sessions/{session_id}")).json()
    assert session["status"] == "idle"
    notice = (await loop.messages(base))[-1]
    assert notice["role"] == "agent"
    assert "interrupted" in notice["content"][0]["text"]

    # The session answers its next message as usual (a new workflow run).
    await answer_quickly(loop, base)
    frames = await loop.send(base, "again", timeout=60)
    assert frames[-1]["type"] == "turn.completed"


async def test_a_turn_busy_longer_than_the_grace_is_left_to_its_workflow(
    loop: Loop, publisher: redis.Redis
) -> None:
    # Slow enough (~4 s) that the sweep meets the turn running.
    base = await loop.chat(simulator={**SLOW, "text": " ".join(f"w{i}" for i in range(80))})
    await loop.send(base, "speak slowly", wait=False)
    await until(loop, base, "reason.started")
    assert await sweep(loop, publisher) == 0
    stored = await until(loop, base, "turn.completed")
    assert [e.type for e in stored if e.type in TURN_ENDS] == ["turn.completed"]


async def test_a_turn_stranded_behind_a_newer_one_is_closed_without_idling_the_session(
    loop: Loop, publisher: redis.Redis
) -> None:
    base = await loop.chat(simulator=SLOW)
    session_id = base.split("/")[5]
    await loop.send(base, "first", wait=False)
    await until(loop, base, "reason.started")
    await loop.send(base, "second", wait=False)  # queued behind the first turn
    await loop.temporal.get_workflow_handle(f"session-{session_id}").terminate("lost")
    # The second turn must still be running when the sweep closes the first (the case under test);
    # an instant answer could finish it first on a loaded machine (seen in CI), so it takes ~4 s.
    await answer_with(loop, base, {**SLOW, "text": " ".join(f"w{i}" for i in range(80))})
    # The second message's dispatch is swept up first: a new run starts its turn, and the first
    # turn is no longer the session's latest.
    assert (
        await sweep_once(loop.db, loop.temporal, loop.settings.temporal_task_queue, grace=timedelta(0)) == 1
    )
    async with asyncio.timeout(60):
        while sum(1 for e in await loop.stored(base) if e.type == "turn.started") < 2:
            await asyncio.sleep(0.05)
    assert await sweep(loop, publisher) == 1
    stored = await until(loop, base, "turn.completed")
    ends = [(e.type, e.context["input_message_id"]) for e in stored if e.type in TURN_ENDS]
    users = [m["id"] for m in await loop.messages(base) if m["role"] == "user"]
    assert ends == [("turn.failed", users[0]), ("turn.completed", users[1])]
    # The close did not idle the session under the running turn: one idle, at the very end.
    assert [e.type for e in stored].count("session.idled") == 1
    assert stored[-1].type == "session.idled"
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))
