"""Hands the loop any user message whose dispatch was lost (the API stored it, then could not reach
Temporal, or died before signalling). Runs in every worker; the workflow ignores a message it
already has, so overlapping sweeps are harmless."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from sqlalchemy import text
from temporalio.client import Client

from core.db import Database
from core.schemas.turns import SessionInput

log = structlog.get_logger("everloop.sweeper")

GRACE = timedelta(seconds=10)  # a normal dispatch happens within the POST; give it this long
HORIZON = timedelta(days=1)  # older messages were dealt with, or need a person
EVERY_S = 10.0

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


async def sweep_forever(db: Database, client: Client, task_queue: str) -> None:
    while True:
        try:
            await sweep_once(db, client, task_queue)
        except Exception as exc:  # the next sweep tries again
            log.warning("sweep failed", error=str(exc))
        await asyncio.sleep(EVERY_S)
