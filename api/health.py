"""`/health` (the process answers) and `/ready` (every backing service answers)."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

import core
from api.openapi import error_responses
from api.state import Services


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok"]
    version: str
    runner_mode: str
    auth_mode: str


class Readiness(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: Literal["ready", "not_ready"]
    detail: str | None = None


class HealthController(Controller):
    tags = ["health"]

    @get("/health", operation_id="getHealth", responses=error_responses(limited=False))
    async def health(self, services: NamedDependency[Services]) -> Health:
        """Liveness: the API process is up. No authentication."""
        return Health(
            status="ok",
            version=core.__version__,
            runner_mode="temporal",
            auth_mode=services.settings.auth_mode.value,
        )

    @get(
        "/ready",
        operation_id="getReadiness",
        responses={
            **error_responses(limited=False),
            503: ResponseSpec(
                data_container=Readiness,
                description="A backing service does not answer; `detail` says which",
                generate_examples=False,
            ),
        },
        media_type=MediaType.JSON,
    )
    async def ready(self, services: NamedDependency[Services]) -> Response[Readiness]:
        """Readiness: PostgreSQL, Redis and Temporal all answer. No authentication."""
        problems = await services.check()
        if problems:
            return Response(Readiness(status="not_ready", detail="; ".join(problems)), status_code=503)
        return Response(Readiness(status="ready"), status_code=200)
