"""The Litestar application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.types import ControllerRouterHandler
from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError

from api.agents import AgentController
from api.analytics import AnalyticsController, V2AnalyticsController
from api.auth import auth_routers
from api.body import request_class, require_json_body
from api.capabilities import CapabilityController
from api.console import console_handlers
from api.deps import provide_db_session, provide_identity
from api.drift import DriftController
from api.errors import EXCEPTION_HANDLERS
from api.events import EventController
from api.files import FileController, FlatFileController
from api.forks import ForkController
from api.golden import GoldenTestController
from api.guard import BrowserGuardMiddleware
from api.health import HealthController
from api.llm import FlatModelController, ModelController, ProviderController
from api.mcp_servers import McpServerController
from api.messages import MessageController
from api.metrics import ApiMetrics, MetricsController, RequestMetrics
from api.middleware import RequestContextMiddleware
from api.openapi import docs_handlers, openapi_config
from api.otlp import OtlpController
from api.pagination import provide_page_params
from api.projects import ProjectController
from api.rate_limit import RateLimitMiddleware
from api.rate_limits import RateLimitController
from api.replays import ReplayController
from api.security import authentication_middleware
from api.session_routes import FlatSessionController
from api.sessions import SessionController
from api.simulator import simulator_router
from api.state import Services, rate_limited
from api.tool_results import FlatToolResultController, ToolResultController
from api.trace_events import TraceEventController
from api.traces import SpanController, TraceController
from api.turns import TurnController
from api.v2_calls import V2CallController
from api.v2_datasets import V2DatasetController
from api.v2_embeddings import V2EmbeddingsController
from api.v2_functions import V2FunctionController
from api.v2_knowledge import V2KnowledgeController, V2KnowledgeUploadController
from api.v2_models import V2ModelController
from api.v2_ocr import V2OcrController
from api.v2_openai import V2OpenAIController
from api.v2_rerank import V2RerankController
from api.v2_traces import V2SpanController, V2TraceController
from api.webhooks import WebhookController
from core.db import Database
from core.json_limits import JsonLimits
from core.logging import configure_logging
from core.settings import Settings, SettingsError, get_settings

log = structlog.get_logger("everloop.api")


def _required(value: str | None, name: str) -> str:
    if not value:
        raise SettingsError(
            f"{name} is not set. `everloop dev` sets it for you; to run the API alone, start "
            "`everloop services` and export what it prints"
        )
    return value


def _services(state: State) -> Services:
    services: Services = state.services
    return services


def _pools(app: Litestar) -> tuple[Database, Redis]:
    services: Services = app.state.services
    return services.db, services.redis


async def _ensure_accounts(services: Services) -> None:
    try:
        await services.ensure_accounts()
    except (OSError, DBAPIError) as exc:
        # Start anyway: /ready says PostgreSQL is missing, and the first request that needs the
        # account makes it (api/security.py, the login route).
        log.warning("could not set up the admin account yet", error=str(exc))


def create_app(
    settings: Settings | None = None,
    *,
    extra_handlers: Sequence[ControllerRouterHandler] = (),
    configure_logs: bool = True,
) -> Litestar:
    settings = settings or get_settings()
    settings.check_runnable()
    database_url = _required(settings.database_url, "DATABASE_URL")
    redis_url = _required(settings.redis_url, "REDIS_URL")
    temporal_address = _required(settings.temporal_address, "TEMPORAL_ADDRESS")
    if configure_logs:
        configure_logging(settings.log_level, settings.log_format)

    def connect() -> Services:
        return Services(settings, database_url, redis_url, temporal_address)

    metrics = ApiMetrics(lambda: _pools(app))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        services: Services = app.state.services
        try:
            await _ensure_accounts(services)
            yield
        finally:
            # Fresh connections for a next lifespan of this app object (made, not opened: nothing
            # connects until used): an app may be served again (the tests reuse one: building it
            # registers 400 routes, most of a second of CPU), and nothing of this one's (a pool, a
            # cache, a lock bound to its event loop) may reach it.
            app.state.services = connect()
            await services.close()

    cors = (
        CORSConfig(allow_origins=list(settings.cors_origins), allow_credentials=True)
        if settings.cors_origins
        else None
    )
    app = Litestar(
        route_handlers=[
            HealthController,
            MetricsController,
            *auth_routers(),
            AgentController,
            SessionController,
            FlatSessionController,
            TurnController,
            ToolResultController,
            FlatToolResultController,
            MessageController,
            EventController,
            FileController,
            FlatFileController,
            ProviderController,
            ModelController,
            FlatModelController,
            CapabilityController,
            McpServerController,
            WebhookController,
            OtlpController,
            V2SpanController,
            V2TraceController,
            V2CallController,
            V2ModelController,
            V2OpenAIController,
            V2FunctionController,
            V2DatasetController,
            V2KnowledgeController,
            V2KnowledgeUploadController,
            V2EmbeddingsController,
            V2RerankController,
            V2OcrController,
            ProjectController,
            RateLimitController,
            TraceController,
            ReplayController,
            ForkController,
            SpanController,
            TraceEventController,
            AnalyticsController,
            V2AnalyticsController,
            DriftController,
            GoldenTestController,
            *([simulator_router] if settings.simulator_enabled else []),
            *docs_handlers(),
            *console_handlers(),
            *extra_handlers,
        ],
        dependencies={
            "services": Provide(_services, sync_to_thread=False),
            "db_session": Provide(provide_db_session),
            "who": Provide(provide_identity, sync_to_thread=False),
            "page_params": Provide(provide_page_params, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            DefineMiddleware(BrowserGuardMiddleware, settings=settings),
            authentication_middleware(),
            # After authentication: it counts the caller the authentication proved. AUTH_MODE=none
            # has one caller, the machine's own user, and no limits (docs/rate_limits.md).
            *([RateLimitMiddleware()] if rate_limited(settings) else []),
        ],
        state=State({"services": connect(), "metrics": metrics}),
        cors_config=cors,
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_request_body_bytes,
        request_class=request_class(JsonLimits.of(settings)),
        before_request=require_json_body,
        lifespan=[lifespan],
        debug=False,
        logging_config=None,
    )
    # Outermost, not as route middleware: unknown routes, 405s and CORS preflights then get a
    # request id and an access-log line too, and are counted.
    app.asgi_handler = RequestContextMiddleware(RequestMetrics(app.asgi_handler, metrics))
    return app
