"""Drift detection (001, issue 14): `/v1/drift` — the caller's alerts, their summary, resolving one,
and a run now (docs/drift.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, OptionalBody, error_responses
from api.state import Services
from core.errors import InvalidInput
from core.identity import Identity
from core.schemas import drift as schema
from services import drift


class DriftController(Controller):
    path = "/v1/drift"
    tags = ["drift"]
    security = AUTHENTICATED

    @get("/alerts", operation_id="listDriftAlerts", responses=error_responses(400, 403))
    async def list_alerts(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        include_resolved: Annotated[bool, QueryParameter(description="Include resolved alerts.")] = False,
        limit: Annotated[
            int, QueryParameter(ge=1, le=1000, description="At most this many alerts, the newest.")
        ] = 100,
    ) -> list[schema.DriftAlert]:
        """The caller's drift alerts, newest first: a bare array (001's answer)."""
        return await drift.list_alerts(db_session, who, include_resolved=include_resolved, limit=limit)

    @get("/summary", operation_id="driftSummary", responses=error_responses(403))
    async def summary(
        self, db_session: NamedDependency[AsyncSession], who: NamedDependency[Identity]
    ) -> schema.DriftSummary:
        """`total_alerts` (resolved too), `unresolved`, `by_severity` (the unresolved ones) and the ten
        newest alerts."""
        return await drift.summary(db_session, who)

    @post(
        "/alerts/{alert_id:uuid}/resolve",
        operation_id="resolveDriftAlert",
        status_code=200,
        responses=error_responses(403, 404),
    )
    async def resolve(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        alert_id: FromPath[uuid.UUID],
    ) -> schema.DriftAlert:
        """Marks the alert resolved: it leaves the default list and the unresolved counts. Resolving
        it again changes nothing."""
        return await drift.resolve(db_session, who, alert_id)

    @post(
        "/run",
        operation_id="runDriftDetection",
        status_code=200,
        responses=error_responses(400, 403),
        operation_class=OptionalBody,
    )
    async def run(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        request: Request[Any, Any, Any],
        data: Annotated[schema.DriftRunRequest | None, Body()] = None,
    ) -> schema.DriftRunResult:
        """Runs the scheduled detection for the caller's traces now (no body, or `{}`), or for the
        windows ending at `window_end`; answers the alerts of those windows (a repeated run adds
        none)."""
        # Litestar converts leniently (a number would be read as a Unix time); the spec says text.
        # No body at all is a run for now, as `{}` is.
        raw = await request.body()
        sent = msgspec.json.decode(raw) if raw.strip() else None
        if isinstance(sent, dict) and not isinstance(sent.get("window_end", ""), (str, type(None))):
            raise InvalidInput("window_end: an RFC 3339 date-time", field="window_end")
        window_end = data.window_end if data is not None else None
        return await drift.run_now(db_session, services.settings, who, window_end)
