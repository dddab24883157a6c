"""Sessions of an agent: `/v1/agents/{agent_id}/sessions`."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from api.dispatch import stop_loop
from api.openapi import AUTHENTICATED, error_responses
from api.pagination import Page, PageParams, page
from api.state import Services
from core.identity import Identity
from core.schemas.capabilities import SessionTodos
from core.schemas.sessions import CreateSession, Session, UpdateSession
from services import sessions, todos


class SessionController(Controller):
    path = "/v1/agents/{agent_id:uuid}/sessions"
    tags = ["sessions"]
    security = AUTHENTICATED

    @post(operation_id="createSession", responses=error_responses(400, 404, 409))
    async def create_session(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
        data: Annotated[CreateSession, Body()],
    ) -> Session:
        """Open a session on an agent (409 if the agent is archived). Without `model_id` it takes the
        agent's `default_model_id`; the agent's `initial_files`, then the request's, are written into
        its files."""
        return sessions.to_schema(await sessions.create(db_session, who, agent_id, data), who.user_id)

    @get(operation_id="listSessions", responses=error_responses(400, 404))
    async def list_sessions(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        agent_id: FromPath[uuid.UUID],
    ) -> Page[Session]:
        """The agent's sessions, newest first."""
        rows, total = await sessions.list_(db_session, who, agent_id, page_params.offset, page_params.limit)
        return page([sessions.to_schema(r, who.user_id) for r in rows], total, page_params)

    @get("/{session_id:uuid}", operation_id="getSession", responses=error_responses(404))
    async def get_session(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
    ) -> Session:
        """A session, with its status and usage totals."""
        return sessions.to_schema(await sessions.get(db_session, who, agent_id, session_id), who.user_id)

    @get("/{session_id:uuid}/todos", operation_id="getSessionTodos", responses=error_responses(404))
    async def get_session_todos(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
    ) -> SessionTodos:
        """The session's todo list (capability `stateless_todo_list`): the list of the latest
        successful `write_todos` call, or an empty list."""
        return await todos.latest(db_session, who, agent_id, session_id)

    @patch("/{session_id:uuid}", operation_id="updateSession", responses=error_responses(400, 404))
    async def update_session(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        data: Annotated[UpdateSession, Body()],
    ) -> Session:
        """Change the title, tags, model, locale or `parallel_tool_calls` of a session."""
        row = await sessions.update(db_session, who, agent_id, session_id, data)
        return sessions.to_schema(row, who.user_id)

    @delete("/{session_id:uuid}", operation_id="deleteSession", responses=error_responses(404))
    async def delete_session(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
    ) -> None:
        """Delete a session with its messages, events and files; its loop stops."""
        await sessions.delete(db_session, who, agent_id, session_id)
        await stop_loop(services, session_id)
