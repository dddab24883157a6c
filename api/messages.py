"""Messages of a session: `/v1/agents/{agent_id}/sessions/{session_id}/messages`."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, HeaderParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.pagination import Page, PageParams, page
from api.state import Services
from core.identity import Identity
from core.net import NetPolicy
from core.schemas.sessions import CreateMessage, Message
from services import loop, sessions

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        max_length=255,
        min_length=1,
        required=False,
        description="Makes a retried POST return the first message instead of creating another.",
    ),
]


class MessageController(Controller):
    path = "/v1/agents/{agent_id:uuid}/sessions/{session_id:uuid}/messages"
    tags = ["messages"]
    security = AUTHENTICATED

    @post(operation_id="createMessage", responses=error_responses(400, 404, 409, 413))
    async def create_message(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        data: Annotated[CreateMessage, Body()],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Message]:
        """Post a user message (`text` and `image` parts). It is stored with its `message.user`
        event and handed to the session's loop; the answer comes before any LLM work."""
        return await post_message(db_session, who, services, agent_id, session_id, data, idempotency_key)

    @get(operation_id="listMessages", responses=error_responses(400, 404))
    async def list_messages(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
    ) -> Page[Message]:
        """The conversation in order of `sequence`: user, agent and tool-result messages."""
        rows, total = await sessions.list_messages(
            db_session, who, agent_id, session_id, page_params.offset, page_params.limit
        )
        return page([sessions.message_to_schema(r) for r in rows], total, page_params)


async def post_message(
    db: AsyncSession,
    who: Identity,
    services: Services,
    agent_id: uuid.UUID,
    session_id: uuid.UUID,
    data: CreateMessage,
    idempotency_key: str | None,
) -> Response[Message]:
    """Stores, publishes and hands over a message (`services/loop.post_message`); 201 with the
    message, and `Idempotent-Replayed: true` when the key's first message comes back. For the nested
    and the flat (`/v1/sessions/{id}/messages`) route alike."""
    network = NetPolicy(allow_loopback=services.settings.outbound_allow_loopback)
    message, replayed = await loop.post_message(
        db,
        who,
        agent_id,
        session_id,
        data,
        idempotency_key,
        network,
        bus=services.redis,
        temporal=services.temporal,
        task_queue=services.settings.temporal_task_queue,
    )
    headers = {"idempotent-replayed": "true"} if replayed and idempotency_key else {}
    return Response(sessions.message_to_schema(message), status_code=201, headers=headers)
