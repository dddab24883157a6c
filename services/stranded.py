"""Turns left open by a workflow that ended without closing them (failed, terminated, or out of
retries while the database was away): found, and closed with `turn.failed`, so every turn ends with
exactly one end event and SSE clients stop waiting. The sweeper (everloop/sweeper.py) decides which
ones Temporal no longer runs; this module only reads and writes the session's records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Event
from core.schemas import events as ev
from services import conversation, events, forks
from services.sessions import message_to_schema, record_turn_end

ERROR_CODE = "turn_interrupted"


@dataclass(frozen=True)
class OpenTurn:
    session_id: uuid.UUID
    turn_id: str
    input_message_id: str | None


# Every turn that started within the horizon, at least `grace` ago, and has no end; the caller asks
# Temporal about each. Not only each session's latest turn: a turn stranded behind a newer one (a
# new message restarted the session) is found too.
_OPEN = text(
    """
    SELECT t.session_id, t.context ->> 'turn_id', t.context ->> 'input_message_id'
    FROM events t
    WHERE t.type = 'turn.started'
      AND t.ts > now() - make_interval(secs => :horizon)
      AND t.ts < now() - make_interval(secs => :grace)
      AND NOT EXISTS (
        SELECT 1 FROM events e
        WHERE e.session_id = t.session_id AND e.type IN ('turn.completed', 'turn.failed', 'turn.cancelled')
          AND e.context ->> 'turn_id' = t.context ->> 'turn_id'
      )
    ORDER BY t.ts
    """
)
# Older open turns are left alone: a turn is closed within minutes of its workflow ending, so one
# still open after this long predates the sweeper or needs a person.
HORIZON = timedelta(days=7)


async def open_turns(db: AsyncSession, grace: timedelta) -> list[OpenTurn]:
    rows = await db.execute(_OPEN, {"grace": grace.total_seconds(), "horizon": HORIZON.total_seconds()})
    return [OpenTurn(session_id, turn_id, message_id) for session_id, turn_id, message_id in rows if turn_id]


async def close_turn(db: AsyncSession, turn: OpenTurn, reason: str) -> list[Event]:
    """Stores the turn's `turn.failed` (error_code `turn_interrupted`), a notice in the conversation,
    and `session.idled` unless a later turn has started; commits. Nothing if the turn has ended
    meanwhile (its own workflow got there first) or the session is gone. Returns the stored events."""
    if not await events.lock_session(db, turn.session_id):
        return []
    # Under the session's lock: an end stored by the workflow is committed by now, or never will be
    # before ours (its transaction waits for this lock and then finds our events by their keys).
    ended = await db.execute(
        select(Event.id).where(
            Event.session_id == turn.session_id,
            Event.type.in_(ev.TURN_ENDS),
            Event.context["turn_id"].astext == turn.turn_id,
        )
    )
    if ended.first() is not None:
        return []
    latest = await db.execute(
        select(Event.context["turn_id"].astext)
        .where(Event.session_id == turn.session_id, Event.type == ev.type_of(ev.TurnStarted))
        .order_by(Event.sequence.desc())
        .limit(1)
    )
    still_latest = latest.scalar_one_or_none() == turn.turn_id
    error = f"the turn was interrupted: {reason}"
    key = turn.turn_id
    notice = await conversation.add_message(
        db,
        turn.session_id,
        "agent",
        [{"type": "text", "text": f"Sorry, I could not answer: {error}."}],
        metadata={"error_code": ERROR_CODE, "input_message_id": turn.input_message_id},
        idempotency_key=f"{key}:notice",
    )
    said = ev.MessageAgent.notice(message_to_schema(notice))
    new = [
        events.NewEvent(said, f"{key}:notice:message.agent"),
        # As Everruns does: its clients show a turn's messages from output.message.completed.
        events.NewEvent(ev.OutputMessageCompleted.of(said), f"{key}:notice:output.message.completed"),
        events.NewEvent(ev.TurnFailed(turn_id=key, error=error, error_code=ERROR_CODE), f"{key}:turn.failed"),
    ]
    if still_latest:
        new.append(events.NewEvent(ev.SessionIdled(turn_id=key, iterations=0), f"{key}:session.idled"))
    context = {"turn_id": key, "input_message_id": turn.input_message_id}
    stored = await events.append_many(
        db, turn.session_id, new, context=context, values={"status": "idle"} if still_latest else None
    )
    if still_latest and stored:
        await record_turn_end(db, turn.session_id, stored)
    # A fork's turn: its replay ends failed with it (nothing for any other turn).
    if turn.input_message_id is not None:
        await forks.record_end(db, turn.session_id, turn.turn_id, turn.input_message_id, "failed", 0, error)
    await db.commit()
    return stored or []
