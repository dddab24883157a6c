"""Sessions without their agent in the path: `/v1/sessions` (Everruns' current clients use these).

The same sessions, owner checks and services as the nested `/v1/agents/{agent_id}/sessions` routes:
a session is found among all of the caller's agents (`services.sessions.get` without an agent id),
anyone else's answers 404. The flat events, SSE, files and tool results are in their own modules.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import structlog
from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from api.dispatch import Cancelled, cancel_turn, stop_loop
from api.messages import IdempotencyKey, post_message
from api.openapi import AUTHENTICATED, error_responses
from api.pagination import Page, PageParams, page
from api.state import Services
from core.errors import Conflict
from core.identity import Identity
from core.schemas.opswald import AgentSessionDetail, ExternalSessionDetail, SessionEnded, SessionListing
from core.schemas.sessions import CreateFlatSession, CreateMessage, Message, Session, UpdateSession
from services import agents, sessions, trace_sessions

log = structlog.get_logger("everloop.api.sessions")


class FlatSessionController(Controller):
    path = "/v1/sessions"
    tags = ["sessions"]
    security = AUTHENTICATED

    @post(operation_id="createSessionFlat", responses=error_responses(400, 404, 409))
    async def create_session(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        data: Annotated[CreateFlatSession, Body()],
    ) -> Session:
        """Open a session on one of your agents, named by `agent_id` (a UUID or `agent_<32 hex>`)
        or by `agent_name` (exactly one; a name shared by several active agents is a 400). As
        `POST /v1/agents/{agent_id}/sessions` otherwise."""
        return sessions.to_schema(await sessions.create_flat(db_session, who, data), who.user_id)

    @get(operation_id="listSessionsFlat", responses=error_responses(400))
    async def list_sessions(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        agent_id: Annotated[
            str | None, QueryParameter(description="Only this agent's sessions (a UUID or agent_<32 hex>)")
        ] = None,
        search: Annotated[
            str | None, QueryParameter(description="Case-insensitive substring of the title")
        ] = None,
        user_id: Annotated[
            str | None,
            QueryParameter(description="Opswald: the session's user (an agent session's is its owner's id)"),
        ] = None,
        active: Annotated[
            bool | None, QueryParameter(description="Opswald: not ended (true) or ended")
        ] = None,
    ) -> SessionListing:
        """Your sessions of all your agents, newest first (`data`: Everruns' shape), and Opswald's
        `sessions` across agents: the agent sessions and the external ones (a `session_id` your
        traces carry, e.g. from `POST /v1/events`), most recently active first. The filters hold
        for both lists; `offset`/`limit` page each."""
        parsed_agent = agents.parse_id(agent_id, "agent_id") if agent_id else None
        rows, total = await sessions.list_all(
            db_session,
            who,
            agent_id=parsed_agent,
            search=search,
            offset=page_params.offset,
            limit=page_params.limit,
            user_id=user_id,
            active=active,
        )
        found, found_total = await trace_sessions.list_opswald(
            db_session,
            who,
            agent_id=parsed_agent,
            search=search,
            user_id=user_id,
            active=active,
            offset=page_params.offset,
            limit=page_params.limit,
        )
        return SessionListing(
            data=[sessions.to_schema(r, who.user_id) for r in rows],
            total=total,
            offset=page_params.offset,
            limit=page_params.limit,
            sessions=found,
            sessions_total=found_total,
        )

    @get("/{session_id:str}", operation_id="getSessionFlat", responses=error_responses(404))
    async def get_session(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        session_id: FromPath[str],
    ) -> AgentSessionDetail | ExternalSessionDetail:
        """An agent session (a UUID: Everruns' shape, with its status, usage totals, `started_at`,
        `finished_at` and `ended_at`, and Opswald's summary fields beside them), or an external
        session (Opswald's shape with its `trace_ids`): a `session_id` your traces carry that is no
        agent session."""
        row = await trace_sessions.find_agent_session(db_session, who, session_id)
        if row is not None:
            return await trace_sessions.agent_detail(db_session, who, row)
        return await trace_sessions.external(db_session, who, session_id)

    @post(
        "/{session_id:str}/end",
        operation_id="endSessionFlat",
        status_code=200,
        responses=error_responses(404, 503),
    )
    async def end_session(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        session_id: FromPath[str],
    ) -> SessionEnded:
        """End a session (Opswald). An agent session: closed to new messages (a message is then a
        409) and its running turn stopped, as cancel does. An external session: marked ended.
        Ending an ended session changes nothing."""
        row = await trace_sessions.find_agent_session(db_session, who, session_id)
        if row is None:
            ended = await trace_sessions.end_external(db_session, who, session_id)
            return SessionEnded(
                session_id=session_id,
                kind="external",
                status="completed",
                ended_at=ended,
                turn_cancelled=False,
            )
        row, running = await sessions.end(db_session, who, row.id)
        assert row.ended_at is not None
        # Closed first (committed), then a running turn stopped. A message that raced in either
        # landed before the end or is refused; a landed one whose turn had not opened yet is
        # stopped by that turn's first step, which reads `ended_at` (so no worker is asked here).
        stopped = False
        if running:
            try:
                stopped = (await cancel_turn(services, row.id)).cancelled
            except Conflict:  # it ended meanwhile
                stopped = False
            except RPCError as exc:
                # No worker answered: the session is ended all the same, and the turn stops at
                # its next step, which reads `ended_at`.
                log.warning("could not reach the turn to stop it", session_id=str(row.id), error=str(exc))
        return SessionEnded(
            session_id=str(row.id),
            kind="agent",
            status="completed",
            ended_at=row.ended_at,
            turn_cancelled=stopped,
        )

    @patch("/{session_id:uuid}", operation_id="updateSessionFlat", responses=error_responses(400, 404))
    async def update_session(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        session_id: FromPath[uuid.UUID],
        data: Annotated[UpdateSession, Body()],
    ) -> Session:
        """Change the title, tags, model, locale or `parallel_tool_calls` of a session."""
        row = await sessions.update(db_session, who, None, session_id, data)
        return sessions.to_schema(row, who.user_id)

    @delete("/{session_id:uuid}", operation_id="deleteSessionFlat", responses=error_responses(404))
    async def delete_session(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        session_id: FromPath[uuid.UUID],
    ) -> None:
        """Delete a session with its messages, events and files; its loop stops."""
        await sessions.delete(db_session, who, None, session_id)
        await stop_loop(services, session_id)

    @post(
        "/{session_id:uuid}/messages",
        operation_id="createMessageFlat",
        tags=["messages"],
        responses=error_responses(400, 404, 409, 413),
    )
    async def create_message(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        session_id: FromPath[uuid.UUID],
        data: Annotated[CreateMessage, Body()],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Message]:
        """Post a user message, as `POST /v1/agents/{agent_id}/sessions/{id}/messages` does (the
        same `Idempotency-Key` handling)."""
        session = await sessions.get(db_session, who, None, session_id)
        return await post_message(
            db_session, who, services, session.agent_id, session_id, data, idempotency_key
        )

    @get(
        "/{session_id:uuid}/messages",
        operation_id="listMessagesFlat",
        tags=["messages"],
        responses=error_responses(400, 404),
    )
    async def list_messages(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        session_id: FromPath[uuid.UUID],
    ) -> Page[Message]:
        """The conversation in order of `sequence`: user, agent and tool-result messages."""
        session = await sessions.get(db_session, who, None, session_id)
        rows, total = await sessions.list_messages(
            db_session, who, session.agent_id, session_id, page_params.offset, page_params.limit
        )
        return page([sessions.message_to_schema(r) for r in rows], total, page_params)

    @post(
        "/{session_id:uuid}/cancel",
        operation_id="cancelTurnFlat",
        status_code=200,
        responses=error_responses(404, 409, 503),
    )
    async def cancel(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        session_id: FromPath[uuid.UUID],
    ) -> Cancelled:
        """Stop the running turn, as `POST /v1/agents/{agent_id}/sessions/{id}/cancel` does (409
        when no turn runs)."""
        await sessions.get(db_session, who, None, session_id)
        return await cancel_turn(services, session_id)
