"""`GET /metrics`: the API process's Prometheus metrics (docs/metrics.md).

Requests are counted and timed by `RequestMetrics`, an ASGI wrapper outside Litestar's routing, so
401s, 404s and 405s count too. They are labelled by the route's template
(`/v1/agents/{agent_id}/sessions/{session_id}`), never the path: a path holds ids, which would
make one series per session (unbounded) and tell whoever scrapes which ids exist.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.openapi import ResponseSpec
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

from api.openapi import error_responses
from core.metrics import REQUEST_BUCKETS, PoolCollector, Pools, exposition, new_registry, token_matches
from core.settings import AuthMode, Settings

# Any other method (a client may send any token) is counted as "other": labels stay bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route of a request no route took (a 404, or a 405 for its method)


class ApiMetrics:
    """The API process's metrics, in its own registry, with its pools' use read at each scrape."""

    def __init__(self, pools: Pools) -> None:
        self.registry = registry = new_registry()
        registry.register(PoolCollector(pools))
        self.requests = Counter(
            "everloop_http_requests",
            "HTTP requests answered, by method, route template and status code",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "everloop_http_request_duration_seconds",
            "Seconds from a request's arrival to its response's status line (a stream: until it "
            "opened), by method, route template and status class (2xx, 4xx, ...)",
            ["method", "route", "status_class"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.streams = Gauge(
            "everloop_sse_streams_open",
            "Server-sent event streams open now, by route template",
            ["route"],
            registry=registry,
        )


def _route(scope: Scope) -> str:
    # Litestar sets the matched route's template once it has routed the request.
    return str(scope.get("path_template") or UNMATCHED)


def _is_stream(message: HTTPResponseStartEvent) -> bool:
    return any(
        name.lower() == b"content-type" and value.startswith(b"text/event-stream")
        for name, value in message.get("headers", ())
    )


class RequestMetrics:
    """Counts and times every HTTP request; a response that is an SSE stream is an open stream
    until the request ends (whichever route serves it: the session events, /v2's streamed calls)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in METHODS else "other"
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before it answers
        answered_after: float | None = None
        stream: Gauge | None = None

        async def observing_send(message: Message) -> None:
            nonlocal status, answered_after, stream
            if message["type"] == "http.response.start":
                status = message["status"]
                answered_after = time.perf_counter() - started
                if _is_stream(message):
                    stream = self.metrics.streams.labels(_route(scope))
                    stream.inc()
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            if stream is not None:
                stream.dec()
            route = _route(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            seconds = time.perf_counter() - started if answered_after is None else answered_after
            self.metrics.latency.labels(method, route, f"{status // 100}xx").observe(seconds)


def check_access(settings: Settings, authorization: str | None) -> None:
    """Who may read /metrics: with METRICS_TOKEN, whoever sends it as a bearer token (a scraper
    needs no account, and no account's credential opens it); without, everyone with AUTH_MODE=none
    (bound to loopback, as every route there is) and no one otherwise."""
    if settings.metrics_token is not None:
        if not token_matches(settings.metrics_token, authorization):
            raise NotAuthorizedException(
                "the metrics token is required", headers={"WWW-Authenticate": "Bearer"}
            )
    elif settings.auth_mode is not AuthMode.NONE:
        raise PermissionDeniedException("metrics are off: set METRICS_TOKEN to scrape them (docs/metrics.md)")


class MetricsController(Controller):
    tags = ["health"]

    @get(
        "/metrics",
        operation_id="getMetrics",
        responses={
            **error_responses(401, 403, limited=False),
            200: ResponseSpec(
                data_container=str,
                media_type="text/plain",
                description="The Prometheus text exposition format (OpenMetrics if the `Accept` asks)",
                generate_examples=False,
            ),
        },
    )
    async def metrics(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """This API process's metrics in the Prometheus text format: requests, latencies, open SSE
        streams, PostgreSQL and Redis pool use (docs/metrics.md). Not behind the account sign-in:
        `Authorization: Bearer <METRICS_TOKEN>`, or nothing with AUTH_MODE=none."""
        settings: Settings = request.app.state.services.settings
        check_access(settings, request.headers.get("authorization"))
        body, content_type = exposition(request.app.state.metrics.registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)
