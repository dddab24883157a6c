"""The API's side of the session's loop beyond handing messages over (services/loop.py does that):
cancelling the running turn, stopping a deleted session's workflow."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import structlog
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.state import Services
from core.errors import Conflict
from core.schemas.turns import SessionLoop

log = structlog.get_logger("everloop.dispatch")
QUERY_TIMEOUT = timedelta(seconds=10)


async def stop_loop(services: Services, session_id: object) -> None:
    """Ends a deleted session's workflow. Best effort: its activities also stop on their own once
    they find the session gone."""
    try:
        client = await services.temporal()
        await client.get_workflow_handle(SessionLoop.workflow_id(session_id)).terminate("session deleted")
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            log.warning("could not stop the session's workflow", session_id=str(session_id), error=str(exc))


class Cancelled(msgspec.Struct, kw_only=True):
    cancelled: bool
    turn_id: str | None


async def cancel_turn(services: Services, session_id: object) -> Cancelled:
    """Stops the session's running turn (the caller has checked the session is theirs): its LLM
    call and tools stop, `turn.cancelled` is stored and the session goes idle. Conflict when no turn
    runs."""
    client = await services.temporal()
    handle = client.get_workflow_handle(SessionLoop.workflow_id(session_id))
    try:
        # Bounded: with no worker polling, a query waits for one (a 503 says Temporal did not answer).
        turn_id = await handle.query(
            SessionLoop.CURRENT_TURN,
            result_type=str | None,  # type: ignore[arg-type]
            rpc_timeout=QUERY_TIMEOUT,
        )
        cancelled = await handle.execute_update(SessionLoop.CANCEL_TURN, result_type=bool)
    except (WorkflowUpdateFailedError, RPCError) as exc:
        if isinstance(exc, RPCError) and exc.status not in (
            RPCStatusCode.NOT_FOUND,
            RPCStatusCode.FAILED_PRECONDITION,
        ):
            raise
        raise Conflict("no turn is running in this session") from None
    if not cancelled:
        raise Conflict("no turn is running in this session")
    return Cancelled(cancelled=True, turn_id=turn_id)
