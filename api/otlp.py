"""OTLP in: `POST /v1/otlp/v1/traces`, so an app's OpenTelemetry exporter can point here
(`OTEL_EXPORTER_OTLP_ENDPOINT=http://host:8000/v1/otlp` + `Authorization: Bearer evr_...`)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.state import Services
from core.identity import Identity
from core.json_limits import JsonLimits
from services import otlp_ingest


class OtlpController(Controller):
    path = "/v1/otlp"
    tags = ["otlp"]
    security = AUTHENTICATED

    @post(
        "/v1/traces",
        operation_id="exportOtlpTraces",
        status_code=200,
        responses=error_responses(401, 413, 415, 503),
    )
    async def export_traces(
        self,
        request: Request[Identity, Any, Any],
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
    ) -> Response[bytes]:
        """OpenTelemetry traces (the standard OTLP/HTTP encoding) into the caller's default project
        (a project key: its project).
        The GenAI semantic conventions (`gen_ai.*`) fill the spans' kind, model, provider, tokens,
        input and output; every attribute is kept in `metadata`. Answers an
        `ExportTraceServiceResponse` in the request's encoding; spans with malformed ids are counted
        in its `partial_success`. A span sent again replaces what it said (exporters retry).
        The body: an OTLP `ExportTraceServiceRequest` as protobuf (`application/x-protobuf`) or
        OTLP/JSON (`application/json`, ids in hex), optionally `Content-Encoding: gzip`."""
        content_type = request.headers.get("content-type", "")
        export = otlp_ingest.decode(
            await request.body(),
            content_type,
            request.headers.get("content-encoding", ""),
            services.settings.max_request_body_bytes,
            JsonLimits.of(services.settings),
        )
        # A project key (`vgl_`) writes into its own project; any other credential, the default one.
        answer = await otlp_ingest.ingest(db_session, who.user_id, export, project_id=who.project_id)
        body, media_type = otlp_ingest.encode_response(answer, content_type)
        return Response(body, status_code=200, media_type=media_type)
