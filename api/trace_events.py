"""Opswald's events: `POST /v1/events`, `GET /v1/events/{event_id}`. An event of an outside app's
session becomes a step (span) of that session's trace (docs/traces.md, "Opswald's events")."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.state import Services
from core.identity import Identity
from core.schemas import opswald as schema
from services import trace_events


class TraceEventController(Controller):
    path = "/v1/events"
    tags = ["traces"]
    security = AUTHENTICATED

    @post(operation_id="createTraceEvent", responses=error_responses(400, 403, 404, 413))
    async def create_event(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.CreateEvent, Body()],
    ) -> schema.EventCreated:
        """Record an event (`llm_call`, `tool_call`, `user_input`, or any other type, kept as a
        custom kind) as a step of a trace: the `trace_id` given, else the session's trace (one per
        `session_id`, its id derived from the session's), else a trace of its own. An event sent
        again with its `event_id` (or `id`) updates the same step."""
        return await trace_events.create(
            db_session, who, data, max_field_bytes=services.settings.trace_max_field_bytes
        )

    @get("/{event_id:str}", operation_id="getTraceEvent", responses=error_responses(403, 404))
    async def get_event(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        event_id: FromPath[str],
    ) -> schema.EventOut:
        """An event as it was recorded, with the trace it went to."""
        return await trace_events.get(db_session, who, event_id)
