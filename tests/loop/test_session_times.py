"""A session's `started_at` (its first turn's start) and `finished_at` (its last turn's end; null
while one runs), set with the turns' own events: across real turns, a cancel, a turn that fails
before its first step stores anything, a repeated end, and a turn whose workflow died."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis
from everruns_sdk import models as sdk

from activities.deps import LoopDeps
from activities.turns import TurnActivities
from core import bus
from core.db.models import Event
from core.schemas.turns import TurnEnd
from everloop.sweeper import close_stranded
from tests import factories
from tests.loop.conftest import TURN_ENDS, Loop

# Slow enough (~4 s a turn) to look at the session while its turn runs.
SLOW = {"mode": "fixed", "text": " ".join(f"w{i}" for i in range(80)), "chunk_delay": 0.05}


@pytest.fixture
async def publisher(loop: Loop) -> AsyncIterator[redis.Redis]:
    connection = bus.connect(loop.endpoints.redis_url)
    yield connection
    await connection.aclose()


async def _session(loop: Loop, base: str) -> dict[str, Any]:
    response = await loop.client.get(f"/v1/sessions/{base.rsplit('/', 1)[1]}")
    assert response.status_code == 200, response.text
    sdk.Session.model_validate(response.json())
    body: dict[str, Any] = response.json()
    return body


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def _until(loop: Loop, base: str, kind: str, count: int = 1) -> list[Event]:
    async with asyncio.timeout(60):
        while True:
            stored = await loop.stored(base)
            if sum(e.type == kind for e in stored) >= count:
                return stored
            await asyncio.sleep(0.05)


def _ends(stored: list[Event]) -> list[Event]:
    return [e for e in stored if e.type in TURN_ENDS]


async def test_first_start_and_last_end_across_turns(loop: Loop) -> None:
    base = await loop.chat(simulator=SLOW)
    fresh = await _session(loop, base)
    assert (fresh["started_at"], fresh["finished_at"]) == (None, None)
    # Malformed input starts nothing.
    bad = await loop.client.post(f"{base}/messages", json={"message": {"role": "user", "content": []}})
    assert bad.status_code == 400
    assert (await _session(loop, base))["started_at"] is None

    sending = asyncio.create_task(loop.send(base, "one"))
    stored = await _until(loop, base, "reason.started")
    running = await _session(loop, base)
    assert running["status"] == "active" and running["finished_at"] is None
    started = _time(running["started_at"])
    opened = next(e for e in stored if e.type == "turn.started")
    assert started is not None and abs(started - opened.ts) < timedelta(seconds=5)
    await asyncio.wait_for(sending, 60)
    first_end = _ends(await loop.stored(base))[-1]
    done = await _session(loop, base)
    assert (done["status"], _time(done["started_at"]), _time(done["finished_at"])) == (
        "idle",
        started,
        first_end.ts,
    )

    sending = asyncio.create_task(loop.send(base, "two"))
    await _until(loop, base, "reason.started", count=2)
    again = await _session(loop, base)
    assert (_time(again["started_at"]), again["finished_at"]) == (started, None)  # the first start stays
    await asyncio.wait_for(sending, 60)
    second_end = _ends(await loop.stored(base))[-1]
    assert second_end.ts > first_end.ts
    last = await _session(loop, base)
    assert (_time(last["started_at"]), _time(last["finished_at"])) == (started, second_end.ts)


async def test_a_cancelled_turn_finishes_the_session(loop: Loop) -> None:
    base = await loop.chat(simulator=SLOW)
    sending = asyncio.create_task(loop.send(base, "talk"))
    await _until(loop, base, "reason.started")
    cancelled = await loop.client.post(f"/v1/sessions/{base.rsplit('/', 1)[1]}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    frames = await asyncio.wait_for(sending, 30)
    assert frames[-1]["type"] == "turn.cancelled"
    end = _ends(await loop.stored(base))[-1]
    session = await _session(loop, base)
    assert _time(session["finished_at"]) == end.ts and session["started_at"] is not None


async def test_a_turn_failing_before_its_first_step_stored_anything(loop: Loop) -> None:
    # No model anywhere: the first step fails before it stores the turn's opening; the turn's end
    # stores both, and the session's times come from them.
    agent = await factories.agent(loop.client)
    session = await factories.session(loop.client, agent["id"])
    base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
    frames = await loop.send(base, "hi")
    assert frames[-1]["type"] == "turn.failed"
    stored = await loop.stored(base)
    opened = next(e for e in stored if e.type == "turn.started")
    after = await _session(loop, base)
    assert (_time(after["started_at"]), _time(after["finished_at"])) == (opened.ts, _ends(stored)[-1].ts)


async def test_a_repeated_end_changes_nothing(loop: Loop, publisher: redis.Redis) -> None:
    base = await loop.chat()
    await loop.send(base, "hi")
    stored = await loop.stored(base)
    end = _ends(stored)[-1]
    before = await _session(loop, base)
    # The end activity again, as Temporal runs it when the first attempt's answer was lost.
    turns = TurnActivities(LoopDeps(db=loop.db, bus=publisher, settings=loop.settings, secrets=None))
    await turns.finish_turn(
        TurnEnd(
            session_id=str(end.session_id),
            turn_id=end.context["turn_id"],
            input_message_id=end.context["input_message_id"],
            outcome="completed",
            iterations=end.data["iterations"],
            duration_ms=end.data["duration_ms"],
        )
    )
    assert [e.id for e in await loop.stored(base)] == [e.id for e in stored]
    after = await _session(loop, base)
    assert (after["started_at"], after["finished_at"], after["status"]) == (
        before["started_at"],
        before["finished_at"],
        "idle",
    )
    assert _time(after["finished_at"]) == end.ts


async def test_a_turn_whose_workflow_died_is_finished_by_the_sweeper(
    loop: Loop, publisher: redis.Redis
) -> None:
    base = await loop.chat(simulator=SLOW)
    session_id = base.rsplit("/", 1)[1]
    await loop.send(base, "speak slowly", wait=False)
    await _until(loop, base, "reason.started")
    assert (await _session(loop, base))["finished_at"] is None
    await loop.temporal.get_workflow_handle(f"session-{session_id}").terminate("gone mid-turn")
    assert await close_stranded(loop.db, loop.temporal, publisher, grace=timedelta(0)) == 1
    stored = await loop.stored(base)
    assert [e.type for e in _ends(stored)] == ["turn.failed"]
    closed = await _session(loop, base)
    assert closed["status"] == "idle" and _time(closed["finished_at"]) == _ends(stored)[-1].ts
