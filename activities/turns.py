"""Turn bookkeeping: session status and the turn's start, act and end events.

A turn's opening events and each act's completion are stored by its `reason` steps (in their first
transaction) and, for what no step got to store, by `finish_turn`, which also stores its end."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.deps import EventBatch, LoopDeps
from activities.metrics import Effect, happened
from activities.persist import persist
from core.db.models import Event, Message
from core.schemas import events as ev
from core.schemas.turns import ActCompleted, SessionLoop, TurnEnd
from services import conversation, events, forks
from services.sessions import message_to_schema, record_turn_end


def _context(turn_id: str, message_id: str) -> dict[str, str]:
    return {"turn_id": turn_id, "input_message_id": message_id}


class TurnActivities:
    def __init__(self, deps: LoopDeps) -> None:
        self.deps = deps

    @activity.defn(name=SessionLoop.FINISH_TURN)
    async def finish_turn(self, params: TurnEnd) -> None:
        # A local activity first (once per attempt), then, if the database stays away, a regular
        # one that waits it out (workflows/session.py): either way the turn gets its end event.
        stored = await persist(self.deps.db, lambda db: self._close(db, params), what=f"{params.turn_id}:end")
        await events.publish_all(self.deps.bus, stored)
        if self.deps.exporter is not None:
            # After the end is stored (the turn's spans with it), and without waiting: a backend
            # that is slow or away never holds up or fails a turn. Also when this attempt stored
            # nothing new: an earlier one may have stored the end and died before the export. A
            # turn already exported (`exported_at`) is not sent again; one never sent is the
            # sweeper's (services/otlp_export.py).
            self.deps.exporter.export_turn_later(self.deps.db, params.turn_id, params.session_id)

    async def _close(self, db: AsyncSession, params: TurnEnd) -> list[Event]:
        session_id = uuid.UUID(params.session_id)
        batch = EventBatch(session_id, _context(params.turn_id, params.input_message_id))
        key = params.turn_id
        if params.outcome != "completed":
            # Its first step may have failed or been cancelled before storing these.
            message = await db.get(Message, uuid.UUID(params.input_message_id))
            if message is not None:
                add_opening(batch, params.turn_id, message)
        if params.act is not None:
            add_act_completed(batch, params.act)
        if params.notice_message_id is not None:
            if not await events.lock_session(db, session_id):
                return []  # deleted meanwhile: nothing left to close
            await self._store_notice(db, batch, params)
        if params.outcome == "completed":
            completed = ev.TurnCompleted(
                turn_id=key, iterations=params.iterations, duration_ms=params.duration_ms
            )
            batch.add(completed, f"{key}:turn.completed")
        elif params.outcome == "failed":
            failed = ev.TurnFailed(turn_id=key, error=params.error, error_code=params.error_code)
            batch.add(failed, f"{key}:turn.failed")
        else:
            batch.add(ev.TurnCancelled(turn_id=key), f"{key}:turn.cancelled")
        batch.add(ev.SessionIdled(turn_id=key, iterations=params.iterations), f"{key}:session.idled")
        # Stored already by an earlier attempt, which died before reporting? The metrics count a turn once.
        idled = select(Event.id).where(
            Event.session_id == session_id, Event.idempotency_key == f"{key}:session.idled"
        )
        first = await db.scalar(idled) is None
        if not await batch.store(db, values={"status": "idle"}):
            return []  # deleted meanwhile: nothing left to close
        await record_turn_end(db, session_id, batch.stored)
        if params.fork:
            # With the turn's end: a fork's replay is finished exactly when its turn is.
            await forks.record_end(
                db,
                session_id,
                params.turn_id,
                params.input_message_id,
                params.outcome,
                params.duration_ms,
                params.error,
            )
        await db.commit()
        if first:
            happened(Effect.TURN_ENDED)
        return batch.stored

    async def _store_notice(self, db: AsyncSession, batch: EventBatch, params: TurnEnd) -> None:
        """Tells the user, in the conversation, why the turn failed (no secrets: a fixed text)."""
        assert params.notice_message_id is not None
        existing = await db.get(Message, uuid.UUID(params.notice_message_id))
        if existing is not None:
            return
        text = f"Sorry, I could not answer: {params.error}."
        message = await conversation.add_message(
            db,
            batch.session_id,
            "agent",
            [{"type": "text", "text": text}],
            message_id=uuid.UUID(params.notice_message_id),
            metadata={"error_code": params.error_code, "input_message_id": params.input_message_id},
        )
        notice = ev.MessageAgent.notice(message_to_schema(message))
        batch.add(notice, f"{params.turn_id}:notice:message.agent")
        # As Everruns does: its clients show a turn's messages from output.message.completed.
        batch.add(ev.OutputMessageCompleted.of(notice), f"{params.turn_id}:notice:output.message.completed")


def add_opening(batch: EventBatch, turn_id: str, message: Message) -> None:
    """A turn's opening events, for the turn that answers `message`."""
    input_message_id = str(message.id)
    batch.add(
        ev.SessionActivated(turn_id=turn_id, input_message_id=input_message_id),
        f"{turn_id}:session.activated",
    )
    batch.add(ev.TurnStarted(turn_id=turn_id, input_message_id=input_message_id), f"{turn_id}:turn.started")
    batch.add(ev.InputReceived(message=message_to_schema(message)), f"{turn_id}:input.received")


def add_act_completed(batch: EventBatch, act: ActCompleted) -> None:
    ok = sum(1 for o in act.outcomes if o.status == "success")
    batch.add(
        ev.ActCompleted(completed=True, success_count=ok, error_count=len(act.outcomes) - ok),
        f"{act.turn_id}:{act.iteration}:act.completed",
    )
