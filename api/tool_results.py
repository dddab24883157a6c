"""The answers a waiting turn needs, as Everruns' clients send them: the client's results of
client-side tool calls (`POST .../tool-results`) and a batch of approval decisions
(`POST .../tool-approvals`), under the session nested in its agent and flat under `/v1/sessions`.
(One call's approval: `POST .../tool-approvals/{tool_call_id}`, api/turns.py.)"""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.state import Services
from core.identity import Identity
from core.schemas.turns import (
    SubmitToolApprovals,
    SubmitToolResults,
    ToolApprovalsResolved,
    ToolResultsAccepted,
)
from services import approvals, client_tools

RESULTS_DOC = """Answer client-side tool calls (`tool.call_requested`): `{"tool_results": [{"tool_call_id",
"result" | "error"}]}`. Each result is stored once as the call's tool message with
`tool.call_completed` (`status` `success`, or `error` with the error), and the waiting turn goes on
(the model reads it). Answers `{accepted, status}`; `status` is `active` once no call of the reply
waits any more. The same result sent again is accepted again (nothing is stored twice); another
result for an answered call is a 409, as is a call its timeout answered. 404 for a call id the
session never asked for; 409 `Session is not waiting for tool results` when no turn waits."""

APPROVALS_DOC = """Decide the tool calls that wait for approval (`tool.approval_requested`), as
Everruns' clients send it: `{"decisions": [{"tool_call_id", "decision": "allow" | "reject", "reason"}]}`
(`approve` and `deny` are taken too). A waiting call left out is not approved (denied), as on
Everruns. Answers `{resolved: [{tool_call_id, tool, outcome}], status}`. 404 for an id that never
asked; 409 for one decided already or whose turn ended; 400 for `allow_always`/`reject_always`
(each call is decided on its own here)."""


class ToolResultController(Controller):
    path = "/v1/agents/{agent_id:uuid}/sessions/{session_id:uuid}"
    tags = ["sessions"]
    security = AUTHENTICATED

    @post(
        "/tool-results",
        operation_id="submitToolResults",
        status_code=200,
        responses=error_responses(400, 404, 409, 503),
        description=RESULTS_DOC,
    )
    async def submit_tool_results(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        data: Annotated[SubmitToolResults, Body()],
    ) -> ToolResultsAccepted:
        """Answer client-side tool calls."""
        return await client_tools.submit(
            db_session,
            who,
            agent_id,
            session_id,
            data.tool_results,
            bus=services.redis,
            temporal=services.temporal,
        )

    @post(
        "/tool-approvals",
        operation_id="submitToolApprovals",
        status_code=200,
        responses=error_responses(400, 404, 409, 503),
        description=APPROVALS_DOC,
    )
    async def submit_tool_approvals(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        data: Annotated[SubmitToolApprovals, Body()],
    ) -> ToolApprovalsResolved:
        """Decide the tool calls that wait for approval, as a batch."""
        return await approvals.resolve_batch(
            db_session, who, agent_id, session_id, data, temporal=services.temporal
        )


class FlatToolResultController(Controller):
    """The same routes under `/v1/sessions/{session_id}` (the session among all the caller's agents),
    where Everruns' SDK sends them."""

    path = "/v1/sessions/{session_id:uuid}"
    tags = ["sessions"]
    security = AUTHENTICATED

    @post(
        "/tool-results",
        operation_id="submitToolResultsFlat",
        status_code=200,
        responses=error_responses(400, 404, 409, 503),
        description=RESULTS_DOC,
    )
    async def submit_tool_results(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        session_id: FromPath[uuid.UUID],
        data: Annotated[SubmitToolResults, Body()],
    ) -> ToolResultsAccepted:
        """Answer client-side tool calls."""
        return await client_tools.submit(
            db_session,
            who,
            None,
            session_id,
            data.tool_results,
            bus=services.redis,
            temporal=services.temporal,
        )

    @post(
        "/tool-approvals",
        operation_id="submitToolApprovalsFlat",
        status_code=200,
        responses=error_responses(400, 404, 409, 503),
        description=APPROVALS_DOC,
    )
    async def submit_tool_approvals(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        session_id: FromPath[uuid.UUID],
        data: Annotated[SubmitToolApprovals, Body()],
    ) -> ToolApprovalsResolved:
        """Decide the tool calls that wait for approval, as a batch."""
        return await approvals.resolve_batch(
            db_session, who, None, session_id, data, temporal=services.temporal
        )
