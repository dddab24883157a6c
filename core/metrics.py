"""Prometheus metrics: what the API and the worker share (docs/metrics.md).

Each process has its own registry (`new_registry`), never prometheus_client's global one: tests run
several apps and workers in one process, and a metric registered twice in one registry is an error.
Every metric is an aggregate: no label carries an owner, a user, a session or any other id.
"""

from __future__ import annotations

import hmac
import math
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import structlog
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import ThreadingWSGIServer, choose_encoder, make_wsgi_app
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from core.db import Database
from core.settings import is_loopback

log = structlog.get_logger("everloop.metrics")

# Seconds. An HTTP request is mostly milliseconds; an LLM call, a tool or a turn can take minutes.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WORK_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    900.0,
)


def new_registry() -> CollectorRegistry:
    """A registry with the process's own figures (CPU, memory, open files, GC, Python version)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry's samples and their content type: the Prometheus text format, or OpenMetrics
    when the scraper asks for it (`Accept`), as prometheus_client's own servers answer."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def token_matches(expected: str, authorization: str | None) -> bool:
    """Whether an `Authorization` header carries `Bearer <expected>` (compared in constant time)."""
    scheme, _, given = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


Pools = Callable[[], tuple[Database, Redis]]


class PoolCollector(Collector):
    """The PostgreSQL and Redis connection pools of one process, read when scraped (nothing polls).
    `pools` says which they are now: the API's are replaced when a lifespan ends (api/app.py)."""

    def __init__(self, pools: Pools) -> None:
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        database, client = self.pools()
        pool: Any = database.engine.pool  # a QueuePool: size(), checkedout(), checkedin()
        size = GaugeMetricFamily("everloop_db_pool_size", "Connections the PostgreSQL pool keeps open")
        size.add_metric([], pool.size())
        yield size
        # Beyond its size the pool opens up to max_overflow more (SQLAlchemy's default, 10) while
        # they are asked for, so `in_use` can pass the size: the ceiling is their sum. QueuePool
        # has no public accessor for max_overflow; a negative one means no limit.
        overflow = getattr(pool, "_max_overflow", 0)
        ceiling = GaugeMetricFamily(
            "everloop_db_pool_max_connections",
            "Connections the PostgreSQL pool may have open at once: its size plus its overflow. "
            "in_use at this ceiling: requests wait for a connection",
        )
        ceiling.add_metric([], math.inf if overflow < 0 else pool.size() + overflow)
        yield ceiling
        db = GaugeMetricFamily(
            "everloop_db_pool_connections",
            "PostgreSQL connections of the pool: in_use (checked out) or idle (open, in the pool)",
            labels=["state"],
        )
        db.add_metric(["in_use"], pool.checkedout())
        db.add_metric(["idle"], pool.checkedin())
        yield db
        redis_pool = client.connection_pool
        limit = GaugeMetricFamily("everloop_redis_pool_max_connections", "The Redis pool's limit")
        limit.add_metric([], redis_pool.max_connections)
        yield limit
        counts = {"idle": 0, "in_use": 0}
        # redis-py's public count: [(n, {"db.client.connection.state": "idle" | "used", ...}), ...].
        for count, attributes in redis_pool.get_connection_count():
            state = attributes.get("db.client.connection.state")
            counts["in_use" if state == "used" else "idle"] += count
        redis = GaugeMetricFamily(
            "everloop_redis_pool_connections",
            "Redis connections of the pool: in_use (a command or a stream's subscription) or idle",
            labels=["state"],
        )
        for state, count in counts.items():
            redis.add_metric([state], count)
        yield redis


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A scrape every few seconds is not worth a log line."""


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _guarded(app: WsgiApp, token: str | None) -> WsgiApp:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics is served here\n"]
        if token is not None and not token_matches(token, environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")]
            )
            return [b"a bearer token (METRICS_TOKEN) is required\n"]
        return app(environ, start_response)

    return guarded


class MetricsServer:
    """`GET /metrics` of `registry` on `host:port` (0: any free port; `port` then says which), in
    a thread of its own: a scrape neither waits for nor holds up the process's event loop, so it
    still answers while the loop is stuck. With `token`, only `Authorization: Bearer <token>`."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, token: str | None) -> None:
        # An IPv6 host needs an IPv6 socket (the server class's default is IPv4).
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]

        class Server(ThreadingWSGIServer):
            address_family = family

        app = _guarded(make_wsgi_app(registry), token)
        self._httpd = make_server(str(address[0]), port, app, Server, handler_class=_Quiet)
        self.port: int = self._httpd.server_port
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve(registry: CollectorRegistry, host: str, port: int, token: str | None) -> MetricsServer | None:
    """A MetricsServer, or None (logged) when it cannot or may not listen: metrics are not worth a
    dead process. Without a token, only on a loopback address: anyone who reaches the port reads it."""
    if token is None and not is_loopback(host):
        log.error("metrics not served: set METRICS_TOKEN to serve them on a non-loopback address", host=host)
        return None
    try:
        server = MetricsServer(registry, host, port, token)
    except OSError as exc:
        log.error("metrics not served", host=host, port=port, error=str(exc) or type(exc).__name__)
        return None
    log.info("metrics served", url=f"http://{host}:{server.port}/metrics")
    return server
