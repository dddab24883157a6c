"""Handing a session's stored user messages to its loop (the `SessionWorkflow`), and posting a
message: store, publish, hand over. The API's POST and the workers' sweeper both come here."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from core.db.models import Message
from core.identity import Identity
from core.net import NetPolicy
from core.schemas.sessions import CreateMessage
from core.schemas.turns import SessionInput, SessionLoop
from services import events, sessions

log = structlog.get_logger("everloop.loop")


async def hand_over(
    client: Client, task_queue: str, session_id: uuid.UUID, agent_id: uuid.UUID, message_id: uuid.UUID
) -> None:
    """Signal-with-start of the session's workflow: starts its loop if it is not running, and queues
    the message either way. A message handed over twice runs once (the workflow keeps the ids it has
    handled)."""
    await client.start_workflow(
        SessionLoop.WORKFLOW,
        SessionInput(session_id=str(session_id), agent_id=str(agent_id)),
        id=SessionLoop.workflow_id(session_id),
        task_queue=task_queue,
        start_signal=SessionLoop.NEW_MESSAGE,
        start_signal_args=[str(message_id)],
    )


async def post_message(
    db: AsyncSession,
    who: Identity,
    agent_id: uuid.UUID,
    session_id: uuid.UUID,
    data: CreateMessage,
    idempotency_key: str | None,
    network: NetPolicy,
    *,
    bus: redis.Redis,
    temporal: Callable[[], Awaitable[Client]],
    task_queue: str,
) -> tuple[Message, bool]:
    """Stores a user message with its `message.user` event, publishes the event and hands the
    message to the session's loop. Returns the message and whether it was stored before (a retried
    request with the same idempotency key: nothing is published or handed over again)."""
    message, event = await sessions.post_message(
        db, who, agent_id, session_id, data, idempotency_key, network
    )
    if event is None:
        return message, True
    await events.publish(bus, event)
    try:
        await hand_over(await temporal(), task_queue, session_id, agent_id, message.id)
    except Exception:
        # The message is stored; the workers' sweeper hands it to the loop once Temporal answers
        # again. The client's request has succeeded.
        log.exception("message stored but not handed over", message_id=str(message.id))
    else:
        log.info("message handed over", session_id=str(session_id), message_id=str(message.id))
    return message, False
