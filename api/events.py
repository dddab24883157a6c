"""Events of a session: `/v1/agents/{agent_id}/sessions/{session_id}/events`, a JSON list, or with
`Accept: text/event-stream` a live SSE stream (see `services/event_stream.py`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Schema
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.pagination import Page, PageParams, page
from api.state import Services
from core.errors import InvalidInput
from core.identity import Identity
from core.schemas.events import Event
from services import auth, event_log, event_stream, sessions
from services.events import to_schema

SSE = "text/event-stream"
_VARY = {"Vary": "Accept"}  # one URL, two representations: caches must tell them apart

SinceId = Annotated[
    uuid.UUID | None,
    QueryParameter(description="Only events after this one (by `sequence`); unknown ids are a 400."),
]
Types = Annotated[
    list[str] | None,
    QueryParameter(description="Only these event types: comma-separated, or the parameter repeated."),
]
Exclude = Annotated[
    list[str] | None,
    QueryParameter(description="Leave these event types out: comma-separated, or the parameter repeated."),
]
LastEventId = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        required=False,
        description="SSE only: resume after this event id; it wins over `since_id`.",
    ),
]


@dataclass
class _EventsOperation(Operation):
    """Documents the SSE form of the 200 answer next to the JSON one."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        content = getattr(ok, "content", None)
        if content is not None:
            content[SSE] = OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.STRING,
                    description="Frames `event: <type>`, `id: <event id>`, `data: <event JSON>`; "
                    "ephemeral frames (`output.message.delta`) have no `id`.",
                )
            )


def _wants_stream(request: Request[Any, Any, Any]) -> bool:
    return request.accept.best_match(["application/json", SSE], default="application/json") == SSE


def _frame(item: event_stream.Item) -> ServerSentEventMessage:
    if isinstance(item, event_stream.Stored):
        event = item.event
        return ServerSentEventMessage(
            event=event.type, id=str(event.id), data=msgspec.json.encode(event).decode()
        )
    if isinstance(item, event_stream.Ephemeral):
        return ServerSentEventMessage(event=item.type, data=msgspec.json.encode(item.frame).decode())
    if isinstance(item, event_stream.Connected):
        return ServerSentEventMessage(event="connected", data='{"status":"connected"}')
    return ServerSentEventMessage(comment=item.text, data=None)


async def _frames(follower: event_stream.Follower) -> AsyncIterator[ServerSentEventMessage]:
    async with aclosing(follower.follow()) as items:
        async for item in items:
            yield _frame(item)


class EventController(Controller):
    path = "/v1/agents/{agent_id:uuid}/sessions/{session_id:uuid}/events"
    tags = ["events"]
    security = AUTHENTICATED

    @get(
        operation_id="listSessionEvents",
        # The 200 is declared here: the annotation (a page or a stream) has no schema of its own.
        responses={
            200: ResponseSpec(
                data_container=Page[Event], description="The events, or their stream", generate_examples=False
            ),
            **error_responses(400, 404),
        },
        operation_class=_EventsOperation,
    )
    async def list_events(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        page_params: NamedDependency[PageParams],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        since_id: SinceId = None,
        types: Types = None,
        exclude: Exclude = None,
        last_event_id: LastEventId = None,
    ) -> Response[Page[Event]] | ServerSentEvent:
        """The session's stored events in order of `sequence`. With `Accept: text/event-stream`: an
        SSE stream instead, `event: connected` first, then the stored events after `Last-Event-ID` /
        `since_id`, then new ones live, with keep-alive comments (`offset` and `limit` do not apply)."""
        filter_ = event_log.type_filter(types, exclude)
        if not _wants_stream(request):
            rows, total = await event_log.list_(
                db_session,
                who,
                agent_id,
                session_id,
                since_id,
                filter_,
                page_params.offset,
                page_params.limit,
            )
            return Response(page([to_schema(r) for r in rows], total, page_params), headers=_VARY)
        after = await _position(db_session, who, agent_id, session_id, since_id, last_event_id)
        until, allowed = _credential_limits(request, services)
        follower = event_stream.Follower(
            services.db, services.redis, session_id, after, filter_, until=until, allowed=allowed
        )
        return ServerSentEvent(_frames(follower), headers=_VARY)


def _credential_limits(
    request: Request[Identity, Any, Any], services: Services
) -> tuple[float | None, Callable[[], Awaitable[bool]] | None]:
    """When the stream's credential expires (event-loop time), and how to ask whether it still holds."""
    who, credential, secret = request.user, request.auth, services.settings.auth_jwt_secret
    until = None
    if who.expires_at is not None:
        left = (who.expires_at - datetime.now(UTC)).total_seconds()
        until = asyncio.get_running_loop().time() + left
    if not isinstance(credential, str) or secret is None:
        return until, None

    async def allowed() -> bool:
        async with services.db.session() as db:
            return await auth.still_valid(db, credential, secret)

    return until, allowed


async def _position(
    db: AsyncSession,
    who: Identity,
    agent_id: uuid.UUID,
    session_id: uuid.UUID,
    since_id: uuid.UUID | None,
    last_event_id: str | None,
) -> int:
    """The sequence the stream starts after: the header's event, else `since_id`'s, else 0."""
    await sessions.get(db, who, agent_id, session_id)
    if last_event_id is not None and last_event_id.strip():
        try:
            resume = uuid.UUID(last_event_id.strip())
        except ValueError:
            raise InvalidInput("Last-Event-ID: not an event id", field="Last-Event-ID") from None
        return await event_log.position(db, session_id, resume, "Last-Event-ID")
    if since_id is not None:
        return await event_log.position(db, session_id, since_id, "since_id")
    return 0
