"""Turn bookkeeping: session status and the turn's start, act and end events."""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import EventBatch, LoopDeps
from core.db.models import Agent, Message, Session
from core.schemas.turns import SESSION_GONE, ActCompleted, TurnEnd, TurnInfo, TurnStart
from core.services import events
from core.services.sessions import message_to_schema


def _context(turn_id: str, message_id: str) -> dict[str, str]:
    return {"turn_id": turn_id, "input_message_id": message_id}


class TurnActivities:
    def __init__(self, deps: LoopDeps) -> None:
        self.deps = deps

    @activity.defn(name="begin_turn")
    async def begin_turn(self, params: TurnStart) -> TurnInfo:
        session_id = uuid.UUID(params.session_id)
        batch = EventBatch(session_id, _context(params.turn_id, params.message_id))
        async with self.deps.db.session() as db:
            session = await db.get(Session, session_id)
            message = await db.get(Message, uuid.UUID(params.message_id))
            if session is None or message is None:
                raise ApplicationError(
                    f"session {session_id} or message {params.message_id} is gone",
                    type=SESSION_GONE,
                    non_retryable=True,
                )
            agent = await db.get(Agent, session.agent_id)
            assert agent is not None
            session.status = "active"
            ids = {"turn_id": params.turn_id, "input_message_id": params.message_id}
            await batch.add(db, "session.activated", ids, f"{params.turn_id}:session.activated")
            await batch.add(db, "turn.started", ids, f"{params.turn_id}:turn.started")
            await batch.add(
                db,
                "input.received",
                {"message": msgspec.to_builtins(message_to_schema(message))},
                f"{params.turn_id}:input.received",
            )
            await db.commit()
            info = TurnInfo(agent_id=str(agent.id), max_iterations=agent.max_iterations)
        await events.publish_all(self.deps.bus, batch.stored)
        return info

    @activity.defn(name="complete_act")
    async def complete_act(self, params: ActCompleted) -> None:
        batch = EventBatch(uuid.UUID(params.session_id), {"turn_id": params.turn_id})
        ok = sum(1 for o in params.outcomes if o.status == "success")
        async with self.deps.db.session() as db:
            if not await events.lock_session(db, batch.session_id):
                return  # deleted meanwhile
            await batch.add(
                db,
                "act.completed",
                {"completed": True, "success_count": ok, "error_count": len(params.outcomes) - ok},
                f"{params.turn_id}:{params.iteration}:act.completed",
            )
            await db.commit()
        await events.publish_all(self.deps.bus, batch.stored)

    @activity.defn(name="finish_turn")
    async def finish_turn(self, params: TurnEnd) -> None:
        session_id = uuid.UUID(params.session_id)
        batch = EventBatch(session_id, _context(params.turn_id, params.input_message_id))
        key = params.turn_id
        async with self.deps.db.session() as db:
            if not await events.lock_session(db, session_id):
                return  # deleted meanwhile: nothing left to close
            if params.notice_message_id is not None:
                await self._store_notice(db, batch, params)
            if params.outcome == "completed":
                data = {"turn_id": key, "iterations": params.iterations, "duration_ms": params.duration_ms}
                await batch.add(db, "turn.completed", data, f"{key}:turn.completed")
            elif params.outcome == "failed":
                data = {"turn_id": key, "error": params.error, "error_code": params.error_code}
                await batch.add(db, "turn.failed", data, f"{key}:turn.failed")
            else:
                await batch.add(db, "turn.cancelled", {"turn_id": key}, f"{key}:turn.cancelled")
            await db.execute(update(Session).where(Session.id == session_id).values(status="idle"))
            idled = {"turn_id": key, "iterations": params.iterations}
            await batch.add(db, "session.idled", idled, f"{key}:session.idled")
            await db.commit()
        await events.publish_all(self.deps.bus, batch.stored)

    async def _store_notice(self, db: AsyncSession, batch: EventBatch, params: TurnEnd) -> None:
        """Tells the user, in the conversation, why the turn failed (no secrets: a fixed text)."""
        assert params.notice_message_id is not None
        existing = await db.get(Message, uuid.UUID(params.notice_message_id))
        if existing is not None:
            return
        text = f"Sorry, I could not answer: {params.error}."
        message = Message(
            id=uuid.UUID(params.notice_message_id),
            session_id=batch.session_id,
            sequence=await events.next_sequence(db, batch.session_id, "last_message_sequence"),
            role="agent",
            content=[{"type": "text", "text": text}],
            tags=[],
            metadata_={"error_code": params.error_code, "input_message_id": params.input_message_id},
        )
        db.add(message)
        await db.flush()
        await batch.add(
            db,
            "message.agent",
            {"message": msgspec.to_builtins(message_to_schema(message)), "metadata": {"error": True}},
            f"{params.turn_id}:notice:message.agent",
        )
