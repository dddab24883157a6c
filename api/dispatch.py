"""Where a stored user message goes next: the session's durable loop."""

from __future__ import annotations

import structlog

from api.state import Services
from core.db.models import Message, Session

log = structlog.get_logger("everloop.dispatch")


async def dispatch_message(services: Services, session: Session, message: Message) -> None:
    """Hands a stored, announced user message to the session's loop.

    The loop issue fills this in with a signal-with-start of workflow `session-{id}`. Until then
    nothing is faked: the message is stored with its `message.user` event, and no reply comes.
    """
    log.info("message stored; no loop runs yet", session_id=str(session.id), message_id=str(message.id))
