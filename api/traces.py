"""Traces and spans in `/v1` (001 and Opswald in one shape): batch ingestion, span events, the trace
list with both specs' filters, a trace with its spans and steps, PATCH, DELETE, and `GET /v1/spans`.
A project key (`vgl_`) reads and ingests its own project's traces here (docs/traces.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.pagination import PageParams
from api.params import rfc3339_only
from api.state import Services
from core.identity import Identity
from core.schemas import trace_api as schema
from services import ingest, trace_queries


class TraceController(Controller):
    path = "/v1/traces"
    tags = ["traces"]
    security = AUTHENTICATED

    @post(operation_id="ingestTraceSpans", responses=error_responses(400, 403, 404, 413))
    async def ingest_spans(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.IngestBatch, Body()],
    ) -> schema.Ingested:
        """Ingest a batch of spans of one trace (all-or-nothing). A span id sent again updates that
        span, so a batch may be retried. `project_id`: a project's id or name (default: the
        caller's default project; with a project key, always that key's project)."""
        settings = services.settings
        return await ingest.ingest(
            db_session,
            who,
            data,
            max_spans=settings.trace_max_spans,
            max_field_bytes=settings.trace_max_field_bytes,
        )

    @get(operation_id="listTraces", responses=error_responses(403))
    async def list_traces(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        status: Annotated[
            str | None,
            QueryParameter(description="ok, error, unset (001) or completed, failed, running (Opswald)"),
        ] = None,
        start_date: Annotated[
            datetime | None, QueryParameter(description="Started at or after (001).")
        ] = None,
        end_date: Annotated[
            datetime | None, QueryParameter(description="Started at or before (001).")
        ] = None,
        start_time: Annotated[
            datetime | None, QueryParameter(description="Started at or after (Opswald).")
        ] = None,
        end_time: Annotated[
            datetime | None, QueryParameter(description="Started at or before (Opswald).")
        ] = None,
        error: Annotated[bool | None, QueryParameter(description="Whether the trace failed.")] = None,
        model: Annotated[str | None, QueryParameter(description="A model among its LLM spans'.")] = None,
        min_cost: Annotated[float | None, QueryParameter(ge=0, description="Total cost, USD.")] = None,
        max_cost: Annotated[float | None, QueryParameter(ge=0, description="Total cost, USD.")] = None,
        user_id: Annotated[str | None, QueryParameter(description="The trace's user.")] = None,
        project_id: Annotated[uuid.UUID | None, QueryParameter(description="One project's traces.")] = None,
        session_id: Annotated[str | None, QueryParameter(description="One session's traces.")] = None,
        cursor: Annotated[
            str | None, QueryParameter(description="pagination.next_cursor of the previous page.")
        ] = None,
    ) -> schema.TraceList:
        """Traces, newest first, with 001's and Opswald's filters and fields. Page by offset/limit,
        or by `cursor` (keyset: stable while traces arrive; offset is then ignored)."""
        rfc3339_only(request, "start_date", "end_date", "start_time", "end_time")
        filters = trace_queries.TraceFilters(
            status=status,
            # Both specs' names for the same bounds: where both are given, the narrower one holds.
            start=max((d for d in (start_date, start_time) if d is not None), default=None),
            end=min((d for d in (end_date, end_time) if d is not None), default=None),
            error=error,
            model=model,
            min_cost=min_cost,
            max_cost=max_cost,
            user_id=user_id,
            project_id=project_id,
            session_id=session_id,
        )
        return await trace_queries.list_traces(
            db_session, who, filters, page_params.offset, page_params.limit, cursor
        )

    @get("/{trace_id:str}", operation_id="getTrace", responses=error_responses(403, 404))
    async def get_trace(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        trace_id: FromPath[str],
    ) -> schema.TraceDetail:
        """One trace with its spans (001) and its numbered steps (Opswald)."""
        return await trace_queries.detail(db_session, who, trace_id)

    @patch("/{trace_id:str}", operation_id="updateTrace", responses=error_responses(403, 404))
    async def update_trace(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        trace_id: FromPath[str],
        data: Annotated[schema.UpdateTrace, Body()],
    ) -> schema.TraceDetail:
        """Set a trace's status (either vocabulary), metadata (replaced) or name."""
        return await trace_queries.update_trace(db_session, who, trace_id, data)

    @delete(
        "/{trace_id:str}",
        operation_id="deleteTrace",
        status_code=200,
        responses=error_responses(403, 404),
    )
    async def delete_trace(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        trace_id: FromPath[str],
    ) -> schema.TraceDeleted:
        """Delete a trace with its spans and their events."""
        return await trace_queries.delete_trace(db_session, who, trace_id)

    @post(
        "/{trace_id:str}/events/{span_id:str}",
        operation_id="addSpanEvent",
        responses=error_responses(403, 404),
    )
    async def add_event(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        trace_id: FromPath[str],
        span_id: FromPath[str],
        data: Annotated[schema.AddEvent, Body()],
    ) -> schema.SpanEventOut:
        """Append an event to a span (timestamp: now unless given)."""
        return await ingest.add_event(db_session, who, trace_id, span_id, data)


class SpanController(Controller):
    path = "/v1/spans"
    tags = ["traces"]
    security = AUTHENTICATED

    @get(operation_id="listSpans", responses=error_responses(403))
    async def list_spans(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        kind: Annotated[
            str | None, QueryParameter(description="llm, tool, agent, ... or a custom kind")
        ] = None,
        status: Annotated[str | None, QueryParameter(description="ok, error or unset")] = None,
        trace_id: Annotated[str | None, QueryParameter(description="One trace's spans.")] = None,
    ) -> schema.SpanList:
        """Spans across the caller's traces, newest first."""
        return await trace_queries.list_spans(
            db_session,
            who,
            kind=kind,
            status=status,
            trace_id=trace_id,
            offset=page_params.offset,
            limit=page_params.limit,
        )
