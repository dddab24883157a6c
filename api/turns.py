"""Control and inspection of a session's loop: cancel the running turn, look at its workflow."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.service import RPCError, RPCStatusCode

from api.dispatch import Cancelled, cancel_turn
from api.openapi import AUTHENTICATED, error_responses
from api.state import Services
from core.identity import Identity
from core.schemas.turns import ApprovalDecision, SessionLoop
from services import approvals, sessions


class PendingActivity(msgspec.Struct, kw_only=True):
    activity_id: str
    activity_type: str
    state: str
    attempt: int
    last_failure: str | None
    last_heartbeat: datetime | None


class WorkflowRun(msgspec.Struct, kw_only=True):
    run_id: str
    status: str
    started_at: datetime | None
    closed_at: datetime | None


class WorkflowInfo(msgspec.Struct, kw_only=True):
    workflow_id: str
    run_id: str | None
    status: str
    task_queue: str | None
    history_length: int
    current_turn_id: str | None
    pending_activities: list[PendingActivity]
    runs: list[WorkflowRun]
    temporal_ui_url: str | None


class ApprovalRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    decision: Literal["approve", "deny"]
    reason: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class Approval(msgspec.Struct, kw_only=True):
    tool_call_id: str
    decision: str
    reason: str | None


class TurnController(Controller):
    path = "/v1/agents/{agent_id:uuid}/sessions/{session_id:uuid}"
    tags = ["sessions"]
    security = AUTHENTICATED

    @post("/cancel", operation_id="cancelTurn", status_code=200, responses=error_responses(404, 409, 503))
    async def cancel(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
    ) -> Cancelled:
        """Stop the running turn: its LLM call and tools stop, `turn.cancelled` is stored and the
        session goes idle. 409 when no turn runs."""
        await sessions.get(db_session, who, agent_id, session_id)
        return await cancel_turn(services, session_id)

    @post(
        "/tool-approvals/{tool_call_id:str}",
        operation_id="resolveToolApproval",
        status_code=200,
        responses=error_responses(400, 404, 409, 503),
    )
    async def resolve_approval(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        tool_call_id: FromPath[str],
        data: Annotated[ApprovalRequest, Body()],
    ) -> Approval:
        """Approve or deny a tool call that waits for a person (`tool.approval_requested`). The turn
        goes on at once: the tool runs, or its result says the user denied it (with the reason).
        404 for an id that never asked; 409 once it is decided (by anyone, or by the timeout) or
        its turn has ended."""
        decision = ApprovalDecision(
            tool_call_id=tool_call_id, decision=data.decision, reason=data.reason, user_id=str(who.user_id)
        )
        await approvals.resolve(db_session, who, agent_id, session_id, decision, temporal=services.temporal)
        return Approval(tool_call_id=tool_call_id, decision=data.decision, reason=data.reason)

    @get("/workflow", operation_id="getSessionWorkflow", responses=error_responses(404, 503))
    async def workflow(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
    ) -> WorkflowInfo:
        """For operators: the session's workflow, its runs (one per turn: it continues as new),
        pending activities with attempts and last failure, and a link to the Temporal UI."""
        await sessions.get(db_session, who, agent_id, session_id)
        client = await services.temporal()
        wid = SessionLoop.workflow_id(session_id)
        settings = services.settings
        ui = (
            f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{settings.temporal_namespace}/workflows/{wid}"
            if settings.temporal_ui_url
            else None
        )
        runs = [
            WorkflowRun(
                run_id=w.run_id,
                status=w.status.name if w.status else "UNKNOWN",
                started_at=w.start_time,
                closed_at=w.close_time,
            )
            async for w in client.list_workflows(f'WorkflowId = "{wid}"', limit=50)
        ]
        try:
            description = await client.get_workflow_handle(wid).describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return WorkflowInfo(
                workflow_id=wid,
                run_id=None,
                status="NOT_STARTED",
                task_queue=None,
                history_length=0,
                current_turn_id=None,
                pending_activities=[],
                runs=runs,
                temporal_ui_url=ui,
            )
        pending = [
            PendingActivity(
                activity_id=a.activity_id,
                activity_type=a.activity_type.name,
                state=_enum_name(a.state),
                attempt=a.attempt,
                last_failure=a.last_failure.message if a.HasField("last_failure") else None,
                last_heartbeat=a.last_heartbeat_time.ToDatetime()
                if a.HasField("last_heartbeat_time")
                else None,
            )
            for a in description.raw_description.pending_activities
        ]
        if description.run_id not in {r.run_id for r in runs}:
            # The visibility store lags: the newest run may not be listed yet.
            runs.insert(
                0,
                WorkflowRun(
                    run_id=description.run_id,
                    status=description.status.name if description.status else "UNKNOWN",
                    started_at=description.start_time,
                    closed_at=description.close_time,
                ),
            )
        running = description.status is not None and description.status.name == "RUNNING"
        current = None
        if running:
            current = await client.get_workflow_handle(wid).query(
                SessionLoop.CURRENT_TURN,
                result_type=str | None,  # type: ignore[arg-type]
            )
        return WorkflowInfo(
            workflow_id=wid,
            run_id=description.run_id,
            status=description.status.name if description.status else "UNKNOWN",
            task_queue=description.task_queue,
            history_length=description.history_length,
            current_turn_id=current,
            pending_activities=pending,
            runs=runs,
            temporal_ui_url=ui,
        )


def _enum_name(value: int) -> str:
    name = PendingActivityState.Name(PendingActivityState.ValueType(value))
    return name.removeprefix("PENDING_ACTIVITY_STATE_")
