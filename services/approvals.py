"""Tool calls that wait for a person's approval: where each stands (read from the session's
events), and the decisions, one call at a time or a batch (as Everruns' clients send them), handed
to the turn's workflow as `resolve_approval` updates."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from core.db.models import Event, Session
from core.errors import Conflict, InvalidInput, NotFound
from core.identity import Identity
from core.schemas import events as ev
from core.schemas.turns import (
    APPROVAL_DECIDED,
    ApprovalDecision,
    SessionLoop,
    SubmitToolApprovals,
    ToolApprovalResolution,
    ToolApprovalsResolved,
)
from services import sessions

REQUESTED = ev.type_of(ev.ToolApprovalRequested)
RESOLVED = ev.type_of(ev.ToolApprovalResolved)
ApprovalState = Literal["unknown", "waiting", "resolved", "ended"]
# The reason a waiting call left out of a batch gets (it is denied: silence never approves).
LEFT_OUT = "not approved: left out of a decision on the calls waiting for approval"


async def state(db: AsyncSession, session_id: uuid.UUID, tool_call_id: str) -> ApprovalState:
    """`unknown` (no call of the session asked for approval under this id), `resolved` (decided),
    `ended` (its turn ended undecided, e.g. cancelled) or `waiting`."""
    found = await db.execute(
        select(Event.type, Event.context).where(
            Event.session_id == session_id,
            Event.type.in_([REQUESTED, RESOLVED]),
            Event.data["tool_call_id"].astext == tool_call_id,
        )
    )
    rows = {kind: context for kind, context in found}
    if RESOLVED in rows:
        return "resolved"
    if REQUESTED not in rows:
        return "unknown"
    turn_id = (rows[REQUESTED] or {}).get("turn_id")
    return "ended" if await _turn_ended(db, session_id, str(turn_id)) else "waiting"


async def _turn_ended(db: AsyncSession, session_id: uuid.UUID, turn_id: str) -> bool:
    ended = await db.execute(
        select(Event.id)
        .where(
            Event.session_id == session_id,
            Event.type.in_(ev.TURN_ENDS),
            Event.context["turn_id"].astext == turn_id,
        )
        .limit(1)
    )
    return ended.first() is not None


async def waiting(db: AsyncSession, session_id: uuid.UUID) -> dict[str, str]:
    """The calls that wait for a decision now (tool name by call id): asked, undecided, and their
    turn still running. One turn runs at a time, and it waits inside one act: these are one batch."""
    asked = await db.execute(
        select(Event.data, Event.context).where(Event.session_id == session_id, Event.type == REQUESTED)
    )
    candidates = {
        str(data["tool_call_id"]): (str(data.get("tool_name", "")), str((context or {}).get("turn_id")))
        for data, context in asked
    }
    if not candidates:
        return {}
    decided = await db.execute(
        select(Event.data["tool_call_id"].astext).where(
            Event.session_id == session_id,
            Event.type == RESOLVED,
            Event.data["tool_call_id"].astext.in_(list(candidates)),
        )
    )
    for call_id in decided.scalars():
        candidates.pop(call_id, None)
    ended = {turn for turn in {t for _, t in candidates.values()} if await _turn_ended(db, session_id, turn)}
    return {call_id: name for call_id, (name, turn) in candidates.items() if turn not in ended}


async def resolve(
    db: AsyncSession,
    who: Identity,
    agent_id: uuid.UUID | None,
    session_id: uuid.UUID,
    decision: ApprovalDecision,
    *,
    temporal: Callable[[], Awaitable[Client]],
) -> None:
    """One call's decision. 404 for an id that never asked; 409 once it is decided (by anyone, or
    the timeout) or its turn has ended."""
    await sessions.get(db, who, agent_id, session_id)
    await _check_waiting(db, session_id, decision.tool_call_id)
    await _send(await temporal(), session_id, decision)


async def _check_waiting(db: AsyncSession, session_id: uuid.UUID, tool_call_id: str) -> None:
    status = await state(db, session_id, tool_call_id)
    if status == "unknown":
        raise NotFound(f"no tool call {tool_call_id} waits for approval in this session")
    if status == "resolved":
        raise Conflict(f"tool call {tool_call_id} was already decided")
    if status == "ended":
        raise Conflict(f"tool call {tool_call_id} no longer waits: its turn ended")


async def _send(client: Client, session_id: uuid.UUID, decision: ApprovalDecision) -> None:
    handle = client.get_workflow_handle(SessionLoop.workflow_id(session_id))
    call_id = decision.tool_call_id
    try:
        await handle.execute_update(SessionLoop.RESOLVE_APPROVAL, decision, result_type=ApprovalDecision)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == APPROVAL_DECIDED:
            raise Conflict(f"tool call {call_id} was already decided") from None
        raise
    except RPCError as exc:
        if exc.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise
        raise Conflict(f"tool call {call_id} no longer waits for approval (its turn ended)") from None


async def resolve_batch(
    db: AsyncSession,
    who: Identity,
    agent_id: uuid.UUID | None,
    session_id: uuid.UUID,
    request: SubmitToolApprovals,
    *,
    temporal: Callable[[], Awaitable[Client]],
) -> ToolApprovalsResolved:
    """Decisions on the calls that wait for approval, as Everruns takes them: every call waiting
    now is settled, those the request leaves out as not approved (denied). Checked whole before any
    decision goes out: 400 for an id twice or an `_always` decision, 404 for an id that never asked,
    409 for one decided already or whose turn ended. Then sent one call at a time: a call decided
    by someone else in between is a 409 naming it (the ones before it stand)."""
    await sessions.get(db, who, agent_id, session_id)
    ids = [d.tool_call_id for d in request.decisions]
    for index, answer in enumerate(request.decisions):
        if ids.count(answer.tool_call_id) > 1:
            raise InvalidInput(
                f"tool call {answer.tool_call_id} is decided more than once", field=f"decisions[{index}]"
            )
        if answer.decision.endswith("_always"):
            raise InvalidInput(
                f"decision {answer.decision!r} is not supported: each tool call is decided on its own "
                "(use allow or reject)",
                field=f"decisions[{index}].decision",
            )
    for call_id in ids:
        await _check_waiting(db, session_id, call_id)
    pending = await waiting(db, session_id)
    user_id = str(who.user_id)
    client = await temporal()
    resolved: list[ToolApprovalResolution] = []
    for answer in request.decisions:
        allow = answer.decision in ("allow", "approve")
        decision = ApprovalDecision(
            tool_call_id=answer.tool_call_id,
            decision="approve" if allow else "deny",
            reason=answer.reason,
            user_id=user_id,
        )
        await _send(client, session_id, decision)
        tool = pending.get(answer.tool_call_id, "")
        outcome: Literal["allow", "reject"] = "allow" if allow else "reject"
        resolved.append(ToolApprovalResolution(tool_call_id=answer.tool_call_id, tool=tool, outcome=outcome))
    for call_id, tool in pending.items():
        if call_id in ids:
            continue
        left_out = ApprovalDecision(tool_call_id=call_id, decision="deny", reason=LEFT_OUT, user_id=user_id)
        try:
            await _send(client, session_id, left_out)
        except Conflict:
            continue  # decided meanwhile (by someone, or the timeout): that decision stands
        resolved.append(ToolApprovalResolution(tool_call_id=call_id, tool=tool, outcome="not_approved"))
    status = (await db.execute(select(Session.status).where(Session.id == session_id))).scalar_one()
    return ToolApprovalsResolved(resolved=resolved, status=status)
