"""Two sweeps, run in every worker (overlapping sweeps are harmless):

- hands the loop any user message whose dispatch was lost (the API stored it, then could not reach
  Temporal, or died before signalling); the workflow ignores a message it already has;
- closes a turn whose workflow ended without closing it (failed, terminated, or out of retries
  while the database was away), with `turn.failed`, so no session stays `active` forever.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import redis.asyncio as redis
import structlog
from sqlalchemy import text
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from core.db import Database
from core.schemas.turns import SessionInput
from core.services import events, stranded

log = structlog.get_logger("everloop.sweeper")

GRACE = timedelta(seconds=10)  # a normal dispatch happens within the POST; give it this long
HORIZON = timedelta(days=1)  # older messages were dealt with, or need a person
EVERY_S = 10.0
# A session untouched this long with an open turn is checked against Temporal (a step that is busy
# longer is found still running there and left alone).
STRANDED_GRACE = timedelta(seconds=30)
QUERY_TIMEOUT = timedelta(seconds=5)

_UNSTARTED = text(
    """
    SELECT m.id, m.session_id, s.agent_id
    FROM messages m JOIN sessions s ON s.id = m.session_id
    WHERE m.role = 'user'
      AND m.created_at < now() - make_interval(secs => :grace)
      AND m.created_at > now() - make_interval(secs => :horizon)
      AND NOT EXISTS (
        SELECT 1 FROM events e
        WHERE e.session_id = m.session_id AND e.type = 'turn.started'
          AND e.context ->> 'input_message_id' = m.id::text
      )
    ORDER BY m.created_at
    LIMIT 500
    """
)


async def sweep_once(db: Database, client: Client, task_queue: str, grace: timedelta = GRACE) -> int:
    """Signals every undispatched message once; returns how many."""
    async with db.session() as session:
        rows = (
            await session.execute(
                _UNSTARTED, {"grace": grace.total_seconds(), "horizon": HORIZON.total_seconds()}
            )
        ).all()
    for message_id, session_id, agent_id in rows:
        await client.start_workflow(
            "SessionWorkflow",
            SessionInput(session_id=str(session_id), agent_id=str(agent_id)),
            id=f"session-{session_id}",
            task_queue=task_queue,
            start_signal="new_message",
            start_signal_args=[str(message_id)],
        )
    if rows:
        log.info("re-dispatched messages", count=len(rows))
    return len(rows)


async def close_stranded(
    db: Database, client: Client, bus: redis.Redis, grace: timedelta = STRANDED_GRACE
) -> int:
    """Closes every open turn that its session's workflow no longer runs; returns how many."""
    async with db.session() as session:
        candidates = await stranded.open_turns(session, grace)
    closed = 0
    for turn in candidates:
        try:
            reason = await _why_stranded(client, f"session-{turn.session_id}", turn.turn_id)
        except Exception as exc:  # no worker answers the query, Temporal is away: ask next time
            log.info(
                "cannot tell whether a turn is stranded", session_id=str(turn.session_id), error=str(exc)
            )
            continue
        if reason is None:
            continue
        async with db.session() as session:
            stored = await stranded.close_turn(session, turn, reason)
        if stored:
            closed += 1
            log.warning(
                "closed a stranded turn", session_id=str(turn.session_id), turn_id=turn.turn_id, why=reason
            )
            await events.publish_all(bus, stored)
    return closed


async def _why_stranded(client: Client, workflow_id: str, turn_id: str) -> str | None:
    """Why the turn can no longer end by itself, or None when its workflow still runs it (or
    Temporal cannot tell us now: the next sweep asks again)."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return "its workflow is gone"
        raise
    status = described.status
    if status != WorkflowExecutionStatus.RUNNING:
        name = status.name.lower().replace("_", " ") if status is not None else "ended"
        return f"its workflow {name}" if status != WorkflowExecutionStatus.COMPLETED else "its workflow ended"
    # Running: the turn is open only if it is the one the workflow runs now. A workflow that failed
    # and was started again by a later message runs another turn (or none yet).
    current = await handle.query("current_turn", rpc_timeout=QUERY_TIMEOUT)
    if current == turn_id:
        return None
    return "its workflow moved on without closing it"


async def sweep_forever(db: Database, client: Client, task_queue: str, bus: redis.Redis) -> None:
    while True:
        try:
            await sweep_once(db, client, task_queue)
        except Exception as exc:  # the next sweep tries again
            log.warning("sweep failed", error=str(exc))
        try:
            await close_stranded(db, client, bus)
        except Exception as exc:
            log.warning("stranded-turn sweep failed", error=str(exc))
        await asyncio.sleep(EVERY_S)
