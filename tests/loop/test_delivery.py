"""Nothing lost, nothing twice: lost dispatches are swept up, duplicate signals run once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from core.identity import BUILTIN_ADMIN
from core.schemas.content import TextPart
from core.schemas.sessions import CreateMessage, MessageInput
from core.schemas.turns import SessionInput
from everloop.sweeper import sweep_once
from services import sessions
from tests.loop.conftest import Loop


async def _turns(loop: Loop, base: str) -> list[str]:
    return [e.data["input_message_id"] for e in await loop.stored(base) if e.type == "turn.started"]


async def test_a_message_whose_dispatch_was_lost_is_swept_up(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "fixed", "text": "found you"})
    agent_id, session_id = (uuid.UUID(part) for part in base.split("/")[3:6:2])
    # Stored as the API stores it, but never signalled (as if the API died right after commit).
    async with loop.db.session() as db:
        message, _ = await sessions.post_message(
            db,
            BUILTIN_ADMIN,
            agent_id,
            session_id,
            CreateMessage(message=MessageInput(content=[TextPart(text="anyone?")])),
            None,
        )
    assert (
        await sweep_once(loop.db, loop.temporal, loop.settings.temporal_task_queue, grace=timedelta(0)) == 1
    )
    async with asyncio.timeout(30):
        while not any(e.type == "turn.completed" for e in await loop.stored(base)):
            await asyncio.sleep(0.1)
    assert await _turns(loop, base) == [str(message.id)]
    # Once its turn started, the sweeper leaves it alone.
    assert (
        await sweep_once(loop.db, loop.temporal, loop.settings.temporal_task_queue, grace=timedelta(0)) == 0
    )


async def test_a_message_signalled_twice_runs_once(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "fixed", "text": "once", "first_token_delay": 0.3})
    await loop.send(base, "hello")
    first = (await loop.messages(base))[0]
    agent_id, session_id = base.split("/")[3], base.split("/")[5]
    for _ in range(3):  # a retrying client, a sweep and a replayed request all signal again
        await loop.temporal.start_workflow(
            "SessionWorkflow",
            SessionInput(session_id=session_id, agent_id=agent_id),
            id=f"session-{session_id}",
            task_queue=loop.settings.temporal_task_queue,
            start_signal="new_message",
            start_signal_args=[first["id"]],
        )
    await loop.send(base, "second")  # a later turn: by then any duplicate would have run
    assert await _turns(loop, base) == [first["id"], (await loop.messages(base))[2]["id"]]
    assert [m["role"] for m in await loop.messages(base)] == ["user", "agent", "user", "agent"]


async def test_a_repeat_signal_during_the_messages_own_turn_is_ignored(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "fixed", "text": "slow", "first_token_delay": 1.0})
    agent_id, session_id = base.split("/")[3], base.split("/")[5]
    await loop.send(base, "only once", wait=False)
    message_id = (await loop.messages(base))[0]["id"]
    async with asyncio.timeout(10):
        while "turn.started" not in [e.type for e in await loop.stored(base)]:
            await asyncio.sleep(0.05)
    # What a sweep racing the turn's start would do.
    await loop.temporal.start_workflow(
        "SessionWorkflow",
        SessionInput(session_id=session_id, agent_id=agent_id),
        id=f"session-{session_id}",
        task_queue=loop.settings.temporal_task_queue,
        start_signal="new_message",
        start_signal_args=[message_id],
    )
    await loop.send(base, "next")  # a later turn: a duplicate would have run before it
    next_id = next(m["id"] for m in await loop.messages(base) if m["content"][0]["text"] == "next")
    assert await _turns(loop, base) == [message_id, next_id]


async def test_deleting_a_session_mid_turn_ends_its_workflow(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "fixed", "text": "never mind", "first_token_delay": 5})
    session_id = base.rsplit("/", 1)[1]
    await loop.send(base, "hello", wait=False)
    async with asyncio.timeout(10):
        while "reason.started" not in [e.type for e in await loop.stored(base)]:
            await asyncio.sleep(0.05)
    assert (await loop.client.delete(base)).status_code == 204
    description = await loop.temporal.get_workflow_handle(f"session-{session_id}").describe()
    assert description.status is not None and description.status.name == "TERMINATED"
    assert await loop.stored(base) == []
