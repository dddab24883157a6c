"""Events of a session: `/v1/agents/{agent_id}/sessions/{session_id}/events`, a JSON list, or with
`Accept: text/event-stream` a live SSE stream (see `services/event_stream.py`); `.../sse` the stream
whatever the `Accept` (where Everruns' UI and SDK read it). `/v1/sessions/{session_id}/events` and
`/sse` are the same for a session of any of the caller's agents (Everruns' flat routes)."""

from __future__ import annotations

import asyncio
import functools
import operator
import re
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
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.pagination import Page, PageParams, page
from api.state import Services
from core.identity import Identity
from core.memo import IdentityMemo
from core.schemas import events as ev
from services import event_log, event_stream
from services.events import to_schema

SSE = "text/event-stream"
_VARY = {"Vary": "Accept"}  # one URL, two representations: caches must tell them apart

MAX_SEQUENCE = 2**31 - 1  # sequences are PostgreSQL integers

SinceId = Annotated[
    uuid.UUID | None,
    QueryParameter(
        description="Only events after this one (by `sequence`): a stored event's id, or a live frame's "
        "(the events after the last stored one sent before it); unknown ids are a 400."
    ),
]
AfterSequence = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=MAX_SEQUENCE,
        description="Only events with a greater `sequence` (0: from the first); not with `since_id`.",
    ),
]
StreamAfterSequence = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=MAX_SEQUENCE,
        description="Start after this `sequence` (0, the default: the whole session); `Last-Event-ID` "
        "and `since_id` win over it. Past the session's last event it is a 400.",
    ),
]
BeforeSequence = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=MAX_SEQUENCE,
        description="Only events with a smaller `sequence`; the page is then the newest `limit` of them "
        "(after `offset` newer ones), still oldest first.",
    ),
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
        description="SSE only: resume after this event id; it wins over `since_id` and `after_sequence`.",
    ),
]


# The OpenAPI document's view of the events, generated from the payload Structs
# (`core.schemas.events`): per type, the payload as `data` holds it (its fields, without the tag) and
# the envelope with `type` fixed to the payload's tag. Used for documentation only.
def _untagged(payload: type[ev.Payload]) -> type[msgspec.Struct]:
    doc = msgspec.defstruct(payload.__name__, [], bases=(payload,), tag=False, module=__name__)
    doc.__doc__ = payload.__doc__
    return doc


def _envelope(payload: type[ev.Payload], envelope: type[msgspec.Struct], suffix: str) -> type[msgspec.Struct]:
    type_ = ev.type_of(payload)
    fields = [
        (f.name, _untagged(payload) if f.name == "data" else f.type)  # all required: always sent
        for f in msgspec.structs.fields(envelope)
        if f.name != "type"  # the tag
    ]
    doc = msgspec.defstruct(
        f"{payload.__name__}{suffix}", fields, kw_only=True, tag=type_, tag_field="type", module=__name__
    )
    return doc


def _stored(payload: type[ev.Payload]) -> type[msgspec.Struct]:
    doc = _envelope(payload, ev.Event, "Event")
    doc.__doc__ = f"A stored `{ev.type_of(payload)}` event."
    return doc


def _ephemeral(payload: type[ev.Payload]) -> type[msgspec.Struct]:
    doc = _envelope(payload, ev.LiveEvent, "Frame")
    doc.__doc__ = (
        f"A live-only `{ev.type_of(payload)}` frame: never stored, `sequence` null; its `id` resumes "
        "a stream after the last stored event sent before it."
    )
    return doc


class Connected(msgspec.Struct, kw_only=True):
    """The stream's first frame (`event: connected`): what is stored from now on will be sent."""

    status: Literal["connected"]


_CONNECTED_FRAME = b"event: connected\r\ndata: %s\r\n\r\n" % msgspec.json.encode(
    Connected(status="connected")
)
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
_LIST_RESPONSES = {
    # The 200 is declared here: the annotation (a page or a stream) has no schema of its own.
    200: ResponseSpec(
        data_container=_EVENT_PAGE, description="The events, or their stream", generate_examples=False
    ),
    _FRAME_STATUS: ResponseSpec(data_container=_FRAME, media_type=SSE, generate_examples=False),
    **error_responses(400, 404),
}
_STREAM_RESPONSES = {
    200: ResponseSpec(
        data_container=_FRAME, media_type=SSE, description="The stream", generate_examples=False
    ),
    **error_responses(400, 404),
}


@dataclass
class _EventsOperation(Operation):
    """Documents the SSE form of the 200 answer (next to the JSON one on `/events`): one frame."""

    def __post_init__(self) -> None:
        responses = self.responses or {}
        ok = responses.get("200")
        frames = responses.pop(str(_FRAME_STATUS), None) or ok
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
            "frames (`output.message.delta`, `output.message.reset`) have no `id:` line (their JSON "
            "has an `id`, which resumes too). Comments (`: ...`) keep the connection alive and "
            "report outages.",
        )
        ok.content[SSE] = OpenAPIMediaType(schema=frame)


def _wants_stream(request: Request[Any, Any, Any]) -> bool:
    return request.accept.best_match(["application/json", SSE], default="application/json") == SSE


# Frames are written as Litestar's `ServerSentEventMessage` wrote them (CRLF line ends, `id` before
# `event` before `data`, line breaks dropped from `id` and `event`, a comment split on them), but as
# bytes made here: its per-message encoder (a StringIO and a regex per line) ran once per frame per
# stream. JSON from msgspec holds no raw line break, so `data` is always one line.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _field(value: str) -> bytes:
    return _LINE_BREAK.sub("", value).encode()  # a type from Redis must not open a field of its own


def _frame(item: event_stream.Item) -> bytes:
    if isinstance(item, event_stream.Stored):
        event = item.event
        return b"id: %s\r\nevent: %s\r\ndata: %s\r\n\r\n" % (
            str(event.id).encode(),
            _field(event.type),
            msgspec.json.encode(event),
        )
    if isinstance(item, event_stream.Ephemeral):
        # The same object for every reader at the same position (`event_stream._STAMPED`): encoded once.
        return _ENCODED.get(item, None, functools.partial(_live_frame, item.event))
    if isinstance(item, event_stream.Connected):
        return _CONNECTED_FRAME
    return b"".join(b": %s\r\n" % line.encode() for line in _LINE_BREAK.split(item.text)) + b"\r\n"


def _live_frame(live: ev.LiveEvent) -> bytes:
    # No `id:` line (as Everruns sends them): a browser's Last-Event-ID stays on the last stored
    # event. Its JSON `id`, which Everruns' SDK resumes from, leads to the same place.
    return b"event: %s\r\ndata: %s\r\n\r\n" % (_field(live.type), msgspec.json.encode(live))


_ENCODED: IdentityMemo[event_stream.Ephemeral, bytes] = IdentityMemo()


async def _frames(follower: event_stream.Follower) -> AsyncIterator[bytes]:
    async with aclosing(follower.follow()) as items:
        async for item in items:
            yield _frame(item)


class EventStream(Stream):
    """`text/event-stream` of frames already encoded, with `ServerSentEvent`'s headers."""

    def __init__(self, frames: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        super().__init__(frames, media_type=SSE, headers=headers)
        self.headers.setdefault("Cache-Control", "no-cache")
        self.headers["Connection"] = "keep-alive"
        # nginx and others buffer a response unless told not to: a stream held back is no stream.
        self.headers["X-Accel-Buffering"] = "no"


@dataclass(frozen=True)
class _Query:
    """What a request to one of the four routes asks for, whichever it is."""

    agent_id: uuid.UUID | None
    session_id: uuid.UUID
    since_id: uuid.UUID | None
    after_sequence: int | None
    types: list[str] | None
    exclude: list[str] | None
    last_event_id: str | None
    before_sequence: int | None = None


async def _listed(
    db: AsyncSession, who: Identity, page_params: PageParams, query: _Query
) -> Response[Page[ev.Event]]:
    window = event_log.Window(
        since_id=query.since_id,
        after_sequence=query.after_sequence,
        before_sequence=query.before_sequence,
        offset=page_params.offset,
        limit=page_params.limit,
    )
    filter_ = event_log.type_filter(query.types, query.exclude)
    rows, total = await event_log.list_(db, who, query.agent_id, query.session_id, window, filter_)
    return Response(page([to_schema(r) for r in rows], total, page_params), headers=_VARY)


async def _streamed(
    request: Request[Identity, Any, Any], db: AsyncSession, services: Services, query: _Query
) -> EventStream:
    filter_ = event_log.type_filter(query.types, query.exclude)
    after = await event_log.stream_start(
        db,
        request.user,
        query.agent_id,
        query.session_id,
        last_event_id=query.last_event_id,
        since_id=query.since_id,
        after_sequence=query.after_sequence,
    )
    until, allowed = _credential_limits(request, services)
    follower = event_stream.Follower(
        services.db,
        services.events,
        services.last_sequences,
        query.session_id,
        after,
        filter_,
        until=until,
        allowed=allowed,
    )
    return EventStream(_frames(follower), headers=_VARY)


_LIST_DOC = """The session's stored events in order of `sequence`: after `since_id` or `after_sequence`,
before `before_sequence` (then the newest `limit` of them), in pages of `offset` and `limit`. With
`Accept: text/event-stream`: the SSE stream instead (as `.../sse`)."""
_STREAM_DOC = """The session's events as an SSE stream: `event: connected` first, then the stored events
after `Last-Event-ID` / `since_id` / `after_sequence` (the whole session without one), then new ones
live with the live-only frames, and keep-alive comments."""


class EventController(Controller):
    path = "/v1"
    tags = ["events"]
    security = AUTHENTICATED

    @get(
        "/agents/{agent_id:uuid}/sessions/{session_id:uuid}/events",
        operation_id="listSessionEvents",
        responses=_LIST_RESPONSES,
        operation_class=_EventsOperation,
        description=_LIST_DOC,
    )
    async def list_events(
        self,
        request: Request[Identity, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        page_params: NamedDependency[PageParams],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        since_id: SinceId = None,
        after_sequence: AfterSequence = None,
        before_sequence: BeforeSequence = None,
        types: Types = None,
        exclude: Exclude = None,
        last_event_id: LastEventId = None,
    ) -> Response[Page[ev.Event]] | EventStream:
        query = _Query(
            agent_id, session_id, since_id, after_sequence, types, exclude, last_event_id, before_sequence
        )
        if _wants_stream(request):
            return await _streamed(request, db_session, services, query)
        return await _listed(db_session, who, page_params, query)

    @get(
        "/agents/{agent_id:uuid}/sessions/{session_id:uuid}/sse",
        operation_id="streamSessionEvents",
        responses=_STREAM_RESPONSES,
        operation_class=_EventsOperation,
        description=_STREAM_DOC,
    )
    async def stream_events(
        self,
        request: Request[Identity, Any, Any],
        db_session: NamedDependency[AsyncSession],
        services: NamedDependency[Services],
        agent_id: FromPath[uuid.UUID],
        session_id: FromPath[uuid.UUID],
        since_id: SinceId = None,
        after_sequence: StreamAfterSequence = None,
        types: Types = None,
        exclude: Exclude = None,
        last_event_id: LastEventId = None,
    ) -> EventStream:
        query = _Query(agent_id, session_id, since_id, after_sequence, types, exclude, last_event_id)
        return await _streamed(request, db_session, services, query)

    @get(
        "/sessions/{session_id:uuid}/events",
        operation_id="listSessionEventsFlat",
        responses=_LIST_RESPONSES,
        operation_class=_EventsOperation,
        description=_LIST_DOC + " The same as under `/v1/agents/{agent_id}`.",
    )
    async def list_events_flat(
        self,
        request: Request[Identity, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        page_params: NamedDependency[PageParams],
        session_id: FromPath[uuid.UUID],
        since_id: SinceId = None,
        after_sequence: AfterSequence = None,
        before_sequence: BeforeSequence = None,
        types: Types = None,
        exclude: Exclude = None,
        last_event_id: LastEventId = None,
    ) -> Response[Page[ev.Event]] | EventStream:
        # No agent id: `sessions.get` finds the session among all of the caller's agents.
        query = _Query(
            None, session_id, since_id, after_sequence, types, exclude, last_event_id, before_sequence
        )
        if _wants_stream(request):
            return await _streamed(request, db_session, services, query)
        return await _listed(db_session, who, page_params, query)

    @get(
        "/sessions/{session_id:uuid}/sse",
        operation_id="streamSessionEventsFlat",
        responses=_STREAM_RESPONSES,
        operation_class=_EventsOperation,
        description=_STREAM_DOC + " The same as under `/v1/agents/{agent_id}`.",
    )
    async def stream_events_flat(
        self,
        request: Request[Identity, Any, Any],
        db_session: NamedDependency[AsyncSession],
        services: NamedDependency[Services],
        session_id: FromPath[uuid.UUID],
        since_id: SinceId = None,
        after_sequence: StreamAfterSequence = None,
        types: Types = None,
        exclude: Exclude = None,
        last_event_id: LastEventId = None,
    ) -> EventStream:
        query = _Query(None, session_id, since_id, after_sequence, types, exclude, last_event_id)
        return await _streamed(request, db_session, services, query)


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
        return await services.credential_checks.still_valid(credential)

    return until, allowed
