"""Where a stored user message goes next: the session's durable loop."""

from __future__ import annotations

import structlog
from temporalio.service import RPCError, RPCStatusCode

from api.state import Services
from core.db.models import Message, Session
from core.schemas.turns import SessionInput

log = structlog.get_logger("everloop.dispatch")


def workflow_id(session_id: object) -> str:
    return f"session-{session_id}"


async def dispatch_message(services: Services, session: Session, message: Message) -> None:
    """Signal-with-start of workflow `session-{id}`: starts the session's loop if it is not running,
    and queues the message either way. A message signalled twice runs once (the workflow keeps the
    ids it has handled). If this fails, the workers' sweeper (everloop/sweeper.py) signals it later."""
    client = await services.temporal()
    await client.start_workflow(
        "SessionWorkflow",
        SessionInput(session_id=str(session.id), agent_id=str(session.agent_id)),
        id=workflow_id(session.id),
        task_queue=services.settings.temporal_task_queue,
        start_signal="new_message",
        start_signal_args=[str(message.id)],
    )
    log.info("message dispatched", session_id=str(session.id), message_id=str(message.id))


async def stop_loop(services: Services, session_id: object) -> None:
    """Ends a deleted session's workflow. Best effort: its activities also stop on their own once
    they find the session gone."""
    try:
        client = await services.temporal()
        await client.get_workflow_handle(workflow_id(session_id)).terminate("session deleted")
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            log.warning("could not stop the session's workflow", session_id=str(session_id), error=str(exc))
