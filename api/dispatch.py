"""The API's side of the session's loop beyond handing messages over (services/loop.py does that):
stopping a deleted session's workflow."""

from __future__ import annotations

import structlog
from temporalio.service import RPCError, RPCStatusCode

from api.state import Services
from core.schemas.turns import SessionLoop

log = structlog.get_logger("everloop.dispatch")


async def stop_loop(services: Services, session_id: object) -> None:
    """Ends a deleted session's workflow. Best effort: its activities also stop on their own once
    they find the session gone."""
    try:
        client = await services.temporal()
        await client.get_workflow_handle(SessionLoop.workflow_id(session_id)).terminate("session deleted")
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            log.warning("could not stop the session's workflow", session_id=str(session_id), error=str(exc))
