"""Events of a session: `/v1/agents/{agent_id}/sessions/{session_id}/events`, a JSON list, or with
`Accept: text/event-stream` a live SSE stream (see `services/event_stream.py`)."""

from __future__ import annotations

import asyncio
import functools
import operator
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.pagination import Page, PageParams, page
from api.state import Services
from core.errors import InvalidInput
from core.identity import Identity
from core.schemas import events as ev
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


# The OpenAPI document's view of the events, generated from the payload Structs
# (`core.schemas.events`): per type, the payload as `data` holds it (its fields, without the tag) and
# the envelope with `type` fixed to the payload's tag. Used for documentation only.
def _untagged(payload: type[ev.Payload]) -> type[msgspec.Struct]:
    doc = msgspec.defstruct(payload.__name__, [], bases=(payload,), tag=False, module=__name__)
    doc.__doc__ = payload.__doc__
    return doc


def _stored(payload: type[ev.Payload]) -> type[msgspec.Struct]:
    type_ = ev.type_of(payload)
    fields = [
        (f.name, _untagged(payload) if f.name == "data" else f.type)
        for f in msgspec.structs.fields(ev.Event)
        if f.name != "type"  # the tag
    ]
    name = f"{payload.__name__}Event"
    doc = msgspec.defstruct(name, fields, kw_only=True, tag=type_, tag_field="type", module=__name__)
    doc.__doc__ = f"A stored `{type_}` event."
    return doc


def _ephemeral(payload: type[ev.Payload]) -> type[msgspec.Struct]:
    type_ = ev.type_of(payload)
    fields = [("session_id", uuid.UUID), ("data", _untagged(payload))]
    name = f"{payload.__name__}Frame"
    doc = msgspec.defstruct(name, fields, kw_only=True, tag=type_, tag_field="type", module=__name__)
    doc.__doc__ = f"A live-only `{type_}` frame: never stored, no `id`, no `sequence`."
    return doc


class Connected(msgspec.Struct, kw_only=True):
    """The stream's first frame (`event: connected`): what is stored from now on will be sent."""

    status: Literal["connected"]


_CONNECTED = msgspec.json.encode(Connected(status="connected")).decode()
_STORED: Any = functools.reduce(operator.or_, map(_stored, ev.STORED))
_FRAME: Any = functools.reduce(operator.or_, [*map(_ephemeral, ev.EPHEMERAL), Connected], _STORED)
_EVENT_PAGE = msgspec.defstruct(
    "EventPage",
    [("data", list[_STORED]), ("total", int), ("offset", int), ("limit", int)],
    kw_only=True,
    module=__name__,
)
# A status no answer has: the schema of an SSE frame's `data` is generated there (so its components
# are registered) and moved under the 200 by `_EventsOperation`.
_FRAME_STATUS = 299


@dataclass
class _EventsOperation(Operation):
    """Documents the SSE form of the 200 answer next to the JSON one."""

    def __post_init__(self) -> None:
        responses = self.responses or {}
        frames = responses.pop(str(_FRAME_STATUS), None)
        ok = responses.get("200")
        if not isinstance(frames, OpenAPIResponse) or not isinstance(ok, OpenAPIResponse) or not ok.content:
            return
        assert frames.content is not None
        data = Schema(
            type=OpenAPIType.STRING,
            description="JSON: a stored event (as in the list), a live-only frame, or `connected`.",
            content_media_type="application/json",
            content_schema=frames.content[SSE].schema,
        )
        # One server-sent event, as OpenAPI 3.2's `itemSchema` describes them.
        frame = Schema(
            type=OpenAPIType.OBJECT,
            required=["event", "data"],
            properties={
                "event": Schema(type=OpenAPIType.STRING, description="The frame's `type`, or `connected`"),
                "id": Schema(type=OpenAPIType.STRING, description="A stored event's id (only they have one)"),
                "data": data,
            },
            description="Frames `event: <type>`, `id: <event id>`, `data: <event JSON>`; live-only "
            "frames (`output.message.delta`, `output.message.reset`) have no `id`. Comments (`: ...`) "
            "keep the connection alive and report outages.",
        )
        ok.content[SSE] = OpenAPIMediaType(schema=frame)


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
        return ServerSentEventMessage(event="connected", data=_CONNECTED)
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
                data_container=_EVENT_PAGE, description="The events, or their stream", generate_examples=False
            ),
            _FRAME_STATUS: ResponseSpec(data_container=_FRAME, media_type=SSE, generate_examples=False),
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
    ) -> Response[Page[ev.Event]] | ServerSentEvent:
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
