"""A step's events stored together, once, in order; and a turn's bookkeeping when its steps stop short."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.deps import LoopDeps
from activities.turns import TurnActivities
from core import bus
from core.db.models import Message, Session
from core.schemas import events as ev
from core.schemas.turns import ActCompleted, ToolOutcome, TurnEnd
from services import events
from tests.loop.conftest import Loop

A = events.NewEvent(
    ev.ReasonStarted(agent_id=str(uuid.uuid4()), metadata=ev.ReasonStep(model="m", iteration=1)),
    "turn:1:reason.started",
)
B = events.NewEvent(
    ev.ReasonCompleted(success=True, text_preview="", has_tool_calls=True, tool_call_count=1, error=None),
    "turn:1:reason.completed",
)
C = events.NewEvent(
    ev.ActStarted(tool_calls=[ev.ToolCallName(id="call_1", name="add")]), "turn:1:act.started"
)


async def test_a_retried_step_stores_only_what_it_had_not(loop: Loop) -> None:
    base = await loop.chat()
    session_id = uuid.UUID(base.rsplit("/", 1)[1])
    async with loop.db.session() as db:
        first = await events.append_many(db, session_id, [A, B], context={"turn_id": "turn"})
        await db.commit()
    assert first is not None and [e.sequence for e in first] == [1, 2]
    # The retry of a step whose first attempt stored part of its events (A and B, not C).
    async with loop.db.session() as db:
        again = await events.append_many(db, session_id, [A, B, C], context={"turn_id": "turn"})
        await db.commit()
    assert again is not None
    assert [e.id for e in again[:2]] == [e.id for e in first]
    assert [(e.type, e.sequence) for e in again] == [
        ("reason.started", 1),
        ("reason.completed", 2),
        ("act.started", 3),
    ]
    stored = await loop.stored(base)
    assert [e.sequence for e in stored] == [1, 2, 3]
    async with loop.db.session() as db:
        session = (await db.execute(select(Session).where(Session.id == session_id))).scalar_one()
        assert session.last_event_sequence == 3
        assert await events.append_many(db, uuid.uuid4(), [A], context={}) is None


async def test_finish_turn_stores_what_the_turn_s_steps_did_not(loop: Loop) -> None:
    """A turn cancelled before its first step stored anything still opens before it ends, and the
    completion of an act no step came after is stored, once however often finish_turn runs."""
    base = await loop.chat()
    session_id = uuid.UUID(base.rsplit("/", 1)[1])
    async with loop.db.session() as db:
        message = Message(
            session_id=session_id,
            sequence=await events.next_sequence(db, session_id, "last_message_sequence"),
            role="user",
            content=[{"type": "text", "text": "hi"}],
            tags=[],
        )
        db.add(message)
        await db.commit()
    turn_id = str(uuid.uuid4())
    act = ActCompleted(
        session_id=str(session_id),
        turn_id=turn_id,
        iteration=1,
        outcomes=[ToolOutcome(tool_call_id="call_1", status="success")],
    )
    end = TurnEnd(
        session_id=str(session_id),
        turn_id=turn_id,
        input_message_id=str(message.id),
        outcome="cancelled",
        iterations=1,
        duration_ms=5,
        act=act,
    )
    redis = bus.connect(loop.endpoints.redis_url)
    try:
        turns = TurnActivities(LoopDeps(db=loop.db, bus=redis, settings=loop.settings, secrets=None))
        await ActivityEnvironment().run(turns.finish_turn, end)
        await ActivityEnvironment().run(turns.finish_turn, end)  # a retry
    finally:
        await redis.aclose()
    stored = await loop.stored(base)
    assert [e.type for e in stored] == [
        "session.activated",
        "turn.started",
        "input.received",
        "act.completed",
        "turn.cancelled",
        "session.idled",
    ]
    assert [e.sequence for e in stored] == list(range(1, 7))
    assert stored[2].data["message"]["id"] == str(message.id)
    assert stored[3].data == {"completed": True, "success_count": 1, "error_count": 0}
