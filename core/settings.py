"""Every setting, read once from the environment into one frozen object.

Each variable is documented in docs/settings.md. A bad value stops start-up with a
`SettingsError` that names the variable.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import os
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import msgspec

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class AuthMode(StrEnum):
    NONE = "none"
    ADMIN = "admin"
    FULL = "full"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Seconds before each webhook delivery attempt: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
# (Standard Webhooks' / Svix's schedule: eight attempts over 27 hours 35 minutes).
WEBHOOK_RETRY_SCHEDULE_DEFAULT = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class OAuthClient(msgspec.Struct, kw_only=True, frozen=True):
    """One sign-in provider: this server's client credentials there, and where it lives."""

    client_id: str
    client_secret: str
    issuer: str  # OIDC issuer (Google, generic) or the web root (GitHub)
    api_url: str | None = None  # GitHub's REST API root
    name: str | None = None  # display name of the generic OIDC provider


# The default slots of one `everloop worker` process; why these figures: everloop/worker.py.
DEFAULT_WORKER_WORKFLOW_TASKS = 10
DEFAULT_WORKER_ACTIVITIES = 20
DEFAULT_WORKER_LOCAL_ACTIVITIES = 10


class DatabaseTimeouts(msgspec.Struct, kw_only=True, frozen=True):
    """How long anything waits on PostgreSQL, in seconds (the DB_* settings): a database that is down
    or hung costs a request a bounded wait and a 503, never a hang."""

    connect_s: float = 5.0  # DB_CONNECT_TIMEOUT: a new connection, and the check of a pooled one
    pool_s: float = 5.0  # DB_POOL_TIMEOUT: waiting for a free pooled connection
    statement_s: float = 10.0  # DB_STATEMENT_TIMEOUT: one statement (COMMIT included)
    idle_in_transaction_s: float = 60.0  # DB_IDLE_IN_TRANSACTION_TIMEOUT: the server ends such a session


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    data_dir: Path
    # None means "start the embedded service" (dev and tests); set means "use this real one".
    database_url: str | None
    redis_url: str | None
    temporal_address: str | None
    temporal_namespace: str
    temporal_task_queue: str
    temporal_ui_url: str | None
    host: str
    port: int
    log_level: str
    log_format: LogFormat
    secrets_encryption_key: bytes | None
    secrets_encryption_key_previous: bytes | None
    auth_mode: AuthMode
    auth_jwt_secret: str | None
    admin_email: str | None
    admin_password: str | None
    auth_registration_open: bool
    public_url: str | None
    auth_redirect_url: str
    allowed_hosts: tuple[str, ...]
    trusted_proxies: tuple[str, ...]
    oauth_google: OAuthClient | None
    oauth_github: OAuthClient | None
    oidc: OAuthClient | None
    cors_origins: tuple[str, ...]
    max_request_body_bytes: int
    # How deeply a JSON (or YAML) request body may nest, and how many values its arrays and objects
    # may hold in all: checked before decoding (core/json_limits.py).
    json_max_depth: int = 64
    json_max_items: int = 100_000
    # Trace ingestion (POST /v1/traces): spans per batch, and bytes of one span's input, output,
    # metadata or error (as JSON).
    trace_max_spans: int = 1000
    trace_max_field_bytes: int = 1024 * 1024
    simulator_enabled: bool
    startup_timeout_s: float
    embedded_postgres_port: int
    embedded_redis_port: int
    embedded_temporal_port: int
    embedded_temporal_ui_port: int
    # Test-only: lets web_fetch (core.net) reach loopback addresses, where tests run their servers.
    outbound_allow_loopback: bool = False
    # Seconds the API waits for an MCP server to list its tools (on create, change and refresh).
    mcp_list_timeout_s: float = 15.0
    # /v2/call's answer cache: how long an answer is kept when a call asks with `configuration.cache:
    # true` (V2_CALL_CACHE_TTL; the SDK's `invocation.cache.ttl` names its own, up to 7 days).
    v2_call_cache_ttl_s: int = 3600
    # Rate limits per credential (docs/rate_limits.md): on or off (RATE_LIMITS; never in
    # AUTH_MODE=none), the plan of a credential no admin gave one (RATE_LIMIT_PLAN), its figures when
    # that plan is `enterprise` (RATE_LIMIT_PER_MINUTE, RATE_LIMIT_BURST), and how long an API process
    # keeps a credential's plan before reading it again (RATE_LIMIT_CACHE_S). How long a request waits
    # for Redis, a slot included, before it goes through unlimited (RATE_LIMIT_TIMEOUT_S, the cost of a
    # hung Redis; core/rate_limit.py says why it is long).
    rate_limits_enabled: bool = True
    rate_limit_plan: str = "teams"
    rate_limit_per_minute: int | None = None
    rate_limit_burst: int | None = None
    rate_limit_cache_s: float = 5.0
    rate_limit_timeout_s: float = 10.0
    # Seconds a turn waits for a client's result of a client-side tool call before the call gets an
    # error result and the turn goes on (CLIENT_TOOL_TIMEOUT).
    client_tool_timeout_s: float = 86400.0
    database_timeouts: DatabaseTimeouts = DatabaseTimeouts()
    # OTLP out: where the worker exports each finished turn's spans (None: no export), the headers
    # it sends (OTEL_EXPORTER_OTLP_HEADERS: `k=v,k2=v2`) and the `service.name` it reports.
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_headers: dict[str, str] = msgspec.field(default_factory=dict)
    otel_service_name: str = "everloop"
    # OTLP out, at least once: seconds after a turn's end from which the sweep re-exports a turn its
    # worker did not get exported (OTLP_EXPORT_RETRY_AFTER).
    otlp_export_retry_after_s: float = 60.0
    # Seconds `POST /v1/traces/{id}/replay` waits for its replay to finish before it answers
    # `running` (REPLAY_WAIT_S; 0: answer at once).
    replay_wait_s: float = 30.0
    # Drift detection (docs/drift.md): the recent window and the baseline window before it, the
    # p-value below which a change is significant, the fewest samples a window needs for a test, how
    # often the schedule runs, and how many traces of each window one account's run reads at most.
    drift_window_s: float = 86400.0
    drift_baseline_s: float = 7 * 86400.0
    drift_p_value: float = 0.01
    drift_min_samples: int = 30
    drift_interval_s: float = 3600.0
    drift_max_traces: int = 20_000
    # /v2 knowledge bases: the largest file one upload may carry (KNOWLEDGE_MAX_FILE_BYTES) and how
    # long an upload URL (`GET /v2/knowledge/{id}/upload_url`) stays valid (KNOWLEDGE_UPLOAD_URL_TTL_S).
    knowledge_max_file_bytes: int = 10 * 1024 * 1024
    knowledge_upload_url_ttl_s: int = 900
    # The most chunks one document may be split into (KNOWLEDGE_MAX_CHUNKS_PER_DOCUMENT: a 413 before
    # anything is embedded) and the most live knowledge bases one owner may have
    # (KNOWLEDGE_MAX_BASES_PER_OWNER: a base past 2,000 chunks gets an HNSW index of its own).
    knowledge_max_chunks_per_document: int = 5000
    knowledge_max_bases_per_owner: int = 100
    # Webhooks (docs/webhooks.md): seconds one delivery attempt may take (WEBHOOK_TIMEOUT), the
    # waits before each attempt (WEBHOOK_RETRY_SCHEDULE: the first is normally 0), and how long a
    # webhook's deliveries may fail without a success before it is disabled (WEBHOOK_DISABLE_AFTER).
    webhook_timeout_s: float = 10.0
    webhook_retry_schedule_s: tuple[float, ...] = WEBHOOK_RETRY_SCHEDULE_DEFAULT
    webhook_disable_after_s: float = 5 * 86400.0
    # Prometheus metrics (docs/metrics.md): the bearer token a scrape must send (METRICS_TOKEN; without
    # it the API serves /metrics only with AUTH_MODE=none, the worker only on a loopback address), and
    # where a worker serves its own (WORKER_METRICS_HOST, WORKER_METRICS_PORT; unset or 0: not served).
    metrics_token: str | None = None
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = None
    # Seconds `everloop api` gives open requests after SIGTERM before it closes them
    # (API_GRACEFUL_SHUTDOWN_S): an SSE stream never ends by itself, and without a bound the
    # lifespan's shutdown never ran before the orchestrator's SIGKILL. Below Kubernetes' 30 s grace.
    api_graceful_shutdown_s: int = 15
    # A file `everloop worker` touches from its event loop while its Temporal worker runs
    # (WORKER_LIVENESS_FILE; unset: none): the liveness probe's evidence (deploy/healthcheck.py).
    worker_liveness_file: Path | None = None
    # What one process takes on at once. PostgreSQL connections each API or worker process keeps
    # (DB_POOL_SIZE) and may open beyond them under load (DB_MAX_OVERFLOW); workflow tasks and steps
    # one worker process runs at once (WORKER_MAX_CONCURRENT_WORKFLOW_TASKS, ..._ACTIVITIES).
    database_pool_size: int = 10
    database_max_overflow: int = 10
    worker_max_concurrent_workflow_tasks: int = DEFAULT_WORKER_WORKFLOW_TASKS
    worker_max_concurrent_activities: int = DEFAULT_WORKER_ACTIVITIES
    # Local activities (a turn's end, short tools' calls) one worker process runs at once
    # (WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES): each holds a pooled connection while it runs.
    worker_max_concurrent_local_activities: int = DEFAULT_WORKER_LOCAL_ACTIVITIES
    # Short built-in tools' calls as local activities (LOCAL_TOOL_ACTIVITIES, docs/loop.md). Off
    # while workers of a release without them may replay a session (a rolling update from one, or
    # a rollback to one): such a worker cannot replay a history with a local call.
    local_tool_activities: bool = True

    def uvicorn_options(self) -> dict[str, object]:
        """How `everloop api` serves: client address and scheme from `X-Forwarded-For`/`-Proto` only
        when the connection comes from a trusted proxy (rate limits, cookies, origin checks use them)."""
        return {
            "host": self.host,
            "port": self.port,
            "proxy_headers": True,
            "forwarded_allow_ips": ",".join(self.trusted_proxies),
            "log_config": None,
            "access_log": False,
            "timeout_graceful_shutdown": self.api_graceful_shutdown_s,
        }

    @property
    def api_url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def check_runnable(self) -> None:
        """Checks that combine settings, made when a server is about to start."""
        if self.auth_mode is AuthMode.NONE and not is_loopback(self.host):
            raise SettingsError(
                f"AUTH_MODE=none lets anyone act as admin, so it is allowed only when EVERLOOP_HOST is a "
                f"loopback address (127.0.0.1, ::1, localhost); EVERLOOP_HOST is {self.host!r}"
            )
        if self.auth_mode is AuthMode.FULL:
            if not self.auth_jwt_secret:
                raise SettingsError("AUTH_MODE=full needs AUTH_JWT_SECRET")
            if bool(self.admin_email) != bool(self.admin_password):
                raise SettingsError("ADMIN_EMAIL and ADMIN_PASSWORD go together (or neither)")
            if self.admin_password is not None and len(self.admin_password) < 8:
                raise SettingsError("ADMIN_PASSWORD: at least 8 characters")
        if self.auth_mode is AuthMode.ADMIN:
            missing = [
                name
                for name, value in (
                    ("ADMIN_EMAIL", self.admin_email),
                    ("ADMIN_PASSWORD", self.admin_password),
                    ("AUTH_JWT_SECRET", self.auth_jwt_secret),
                )
                if not value
            ]
            if missing:
                raise SettingsError(f"AUTH_MODE=admin needs {', '.join(missing)}")
            if self.admin_password is not None and len(self.admin_password) < 8:
                raise SettingsError("ADMIN_PASSWORD: at least 8 characters")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Reader:
    """Reads and validates variables from one environment mapping."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def parse(
        self, name: str, default: T, parser: Callable[[str], T], expected: str, *, secret: bool = False
    ) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parser(value)
        except (ValueError, TypeError):
            shown = "something else" if secret else repr(value)
            raise SettingsError(f"{name}: expected {expected}, got {shown}") from None

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        def parse(value: str) -> int:
            number = int(value)
            if not low <= number <= high:
                raise ValueError(value)
            return number

        return self.parse(name, default, parse, f"an integer from {low} to {high}")

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            # Not the value itself: a URL can carry a password.
            shown = f"a {parts.scheme}:// URL" if parts.scheme else "something else"
            raise SettingsError(
                f"{name}: expected a URL starting with {' or '.join(schemes)}://, got {shown}"
            )
        return value

    def key(self, name: str) -> bytes | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            key = base64.b64decode(value, validate=True)
        except binascii.Error:
            key = b""
        if len(key) != 32:
            raise SettingsError(
                f"{name}: expected 32 random bytes in base64 (make one with "
                "`python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())'`)"
            )
        return key


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(value)
    return value


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise ValueError(value)
    return level


def _origins(value: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValueError(origin)
    return origins


def _hosts(value: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower().strip("[]") for h in value.split(",") if h.strip())
    for host in hosts:
        if any(c in host for c in "/ @?#"):
            raise ValueError(host)
    return hosts


def _networks(value: str) -> tuple[str, ...]:
    networks = tuple(n.strip() for n in value.split(",") if n.strip())
    for network in networks:
        ipaddress.ip_network(network, strict=False)  # ValueError for anything else
    return networks


def _jwt_secret(value: str) -> str:
    if len(value) < 32:
        raise ValueError(value)
    return value


def _email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not (local and at and "." in domain):
        raise ValueError(value)
    return value.lower()


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _oauth_client(
    read: _Reader, prefix: str, issuer: str | None, *, api_url: str | None = None, name: str | None = None
) -> OAuthClient | None:
    """`{prefix}_CLIENT_ID` and `{prefix}_CLIENT_SECRET` switch a provider on (both or neither)."""
    client_id, secret = read.raw(f"{prefix}_CLIENT_ID"), read.raw(f"{prefix}_CLIENT_SECRET")
    if client_id is None and secret is None:
        return None
    if client_id is None or secret is None:
        raise SettingsError(f"{prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET go together")
    if issuer is None:
        raise SettingsError(f"{prefix}_ISSUER is needed with {prefix}_CLIENT_ID")
    return OAuthClient(
        client_id=client_id, client_secret=secret, issuer=issuer.rstrip("/"), api_url=api_url, name=name
    )


def _seconds(value: str) -> float:
    seconds = float(value)
    if not 0 < seconds <= 3600:
        raise ValueError(value)
    return seconds


def _replay_wait(value: str) -> float:
    seconds = float(value)
    if not 0 <= seconds <= 300:  # an HTTP request's wait: a longer run is read later
        raise ValueError(value)
    return seconds


def _long_wait(value: str) -> float:
    """Seconds of a durable wait in a turn: up to 30 days, as an approval's timeout."""
    seconds = float(value)
    if not 0 < seconds <= 30 * 86400:
        raise ValueError(value)
    return seconds


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_EXPECTED = "seconds, or a number with s, m, h or d (1m to 366d)"


def _duration(value: str) -> float:
    """Seconds, or a number with a unit: `90s`, `30m`, `1h`, `7d`. At least a minute, at most a year."""
    unit = value[-1].lower()
    seconds = float(value[:-1]) * _DURATION_UNITS[unit] if unit in _DURATION_UNITS else float(value)
    if not 60 <= seconds <= 366 * 86400:
        raise ValueError(value)
    return seconds


def _webhook_timeout(value: str) -> float:
    # Short: an attempt holds a worker slot, and a slow receiver is retried on the schedule.
    seconds = float(value)
    if not 0 < seconds <= 60:
        raise ValueError(value)
    return seconds


def _webhook_schedule(value: str) -> tuple[float, ...]:
    """The wait before each delivery attempt, in seconds: `0,5,300` is three attempts."""
    waits = tuple(float(v) for v in value.split(",") if v.strip())
    if not 1 <= len(waits) <= 30 or any(not 0 <= w <= 86400 for w in waits):
        raise ValueError(value)
    return waits


def _probability(value: str) -> float:
    p = float(value)
    if not 0 < p < 1:
        raise ValueError(value)
    return p


def _rate_limit_plan(read: _Reader) -> tuple[str, int | None, int | None]:
    """RATE_LIMIT_*: a plan of the table, and figures exactly when it is the custom one."""
    from core.rate_limit import ENTERPRISE, MAX_PER_MINUTE, PLANS

    def plan(value: str) -> str:
        if value.lower() not in PLANS:
            raise ValueError(value)
        return value.lower()

    chosen = read.parse("RATE_LIMIT_PLAN", "teams", plan, f"one of {', '.join(PLANS)}")
    per_minute = read.raw("RATE_LIMIT_PER_MINUTE") and read.integer(
        "RATE_LIMIT_PER_MINUTE", 0, low=1, high=MAX_PER_MINUTE
    )
    burst = read.raw("RATE_LIMIT_BURST") and read.integer("RATE_LIMIT_BURST", 0, low=1, high=MAX_PER_MINUTE)
    if (chosen == ENTERPRISE) != bool(per_minute and burst) or bool(per_minute) != bool(burst):
        raise SettingsError(
            "RATE_LIMIT_PER_MINUTE and RATE_LIMIT_BURST: set both with RATE_LIMIT_PLAN=enterprise, "
            "and neither with another plan (its figures are the plan's)"
        )
    return chosen, per_minute or None, burst or None


def _database_timeouts(read: _Reader) -> DatabaseTimeouts:
    default = DatabaseTimeouts()
    expected = "seconds between 0 and 3600"
    return DatabaseTimeouts(
        connect_s=read.parse("DB_CONNECT_TIMEOUT", default.connect_s, _seconds, expected),
        pool_s=read.parse("DB_POOL_TIMEOUT", default.pool_s, _seconds, expected),
        statement_s=read.parse("DB_STATEMENT_TIMEOUT", default.statement_s, _seconds, expected),
        idle_in_transaction_s=read.parse(
            "DB_IDLE_IN_TRANSACTION_TIMEOUT", default.idle_in_transaction_s, _seconds, expected
        ),
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Builds settings from `env` (the process environment by default). Raises SettingsError."""
    read = _Reader(os.environ if env is None else env)
    rate_limit_plan, rate_limit_per_minute, rate_limit_burst = _rate_limit_plan(read)
    return Settings(
        data_dir=Path(read.text("EVERLOOP_DATA_DIR", ".everloop")).expanduser().resolve(),
        database_url=read.url("DATABASE_URL", ("postgresql", "postgresql+asyncpg", "postgres")),
        redis_url=read.url("REDIS_URL", ("redis", "rediss")),
        temporal_address=read.parse("TEMPORAL_ADDRESS", None, _host_port, "host:port"),
        temporal_namespace=read.text("TEMPORAL_NAMESPACE", "default"),
        temporal_task_queue=read.text("TEMPORAL_TASK_QUEUE", "everloop"),
        temporal_ui_url=read.url("TEMPORAL_UI_URL", ("http", "https")),
        host=read.text("EVERLOOP_HOST", "127.0.0.1"),
        port=read.integer("EVERLOOP_PORT", 8000, low=1, high=65535),
        log_level=read.parse("LOG_LEVEL", "INFO", _log_level, f"one of {', '.join(LOG_LEVELS)}"),
        log_format=read.parse("LOG_FORMAT", LogFormat.JSON, LogFormat, "json or console"),
        secrets_encryption_key=read.key("SECRETS_ENCRYPTION_KEY"),
        secrets_encryption_key_previous=read.key("SECRETS_ENCRYPTION_KEY_PREVIOUS"),
        auth_mode=read.parse("AUTH_MODE", AuthMode.FULL, AuthMode, "none, admin or full"),
        auth_jwt_secret=read.parse(
            "AUTH_JWT_SECRET", None, _jwt_secret, "at least 32 characters", secret=True
        ),
        admin_email=read.parse("ADMIN_EMAIL", None, _email, "an email address"),
        admin_password=read.raw("ADMIN_PASSWORD"),
        auth_registration_open=read.parse("AUTH_REGISTRATION_OPEN", True, _boolean, "true or false"),
        public_url=read.url("EVERLOOP_PUBLIC_URL", ("http", "https")),
        auth_redirect_url=read.text("AUTH_REDIRECT_URL", "/"),
        allowed_hosts=read.parse(
            "EVERLOOP_ALLOWED_HOSTS", (), _hosts, "a comma-separated list of host names"
        ),
        trusted_proxies=read.parse(
            "EVERLOOP_TRUSTED_PROXIES", ("127.0.0.1",), _networks, "comma-separated IP addresses or networks"
        ),
        oauth_google=_oauth_client(
            read,
            "OAUTH_GOOGLE",
            read.url("OAUTH_GOOGLE_ISSUER", ("https", "http")) or "https://accounts.google.com",
        ),
        oauth_github=_oauth_client(
            read,
            "OAUTH_GITHUB",
            read.url("OAUTH_GITHUB_URL", ("https", "http")) or "https://github.com",
            api_url=(read.url("OAUTH_GITHUB_API_URL", ("https", "http")) or "https://api.github.com").rstrip(
                "/"
            ),
        ),
        oidc=_oauth_client(
            read,
            "OIDC",
            read.url("OIDC_ISSUER", ("https", "http")),
            name=read.text("OIDC_NAME", "Single sign-on"),
        ),
        cors_origins=read.parse("CORS_ORIGINS", (), _origins, "a comma-separated list of http(s) origins"),
        simulator_enabled=read.parse("EVERLOOP_SIMULATOR", False, _boolean, "true or false"),
        max_request_body_bytes=read.integer("MAX_REQUEST_BODY_BYTES", 10 * 1024 * 1024, low=1024, high=2**31),
        # At most 256: the decoders recurse per level (PyYAML's composer twice), within Python's
        # recursion limit of 1000.
        json_max_depth=read.integer("JSON_MAX_DEPTH", 64, low=16, high=256),
        json_max_items=read.integer("JSON_MAX_ITEMS", 100_000, low=1_000, high=10_000_000),
        trace_max_spans=read.integer("TRACE_MAX_SPANS", 1000, low=1, high=100_000),
        trace_max_field_bytes=read.integer("TRACE_MAX_FIELD_BYTES", 1024 * 1024, low=1024, high=2**31),
        startup_timeout_s=read.parse(
            "EVERLOOP_STARTUP_TIMEOUT", 60.0, _seconds, "seconds between 0 and 3600"
        ),
        embedded_postgres_port=read.integer("EMBEDDED_POSTGRES_PORT", 5433, low=0, high=65535),
        embedded_redis_port=read.integer("EMBEDDED_REDIS_PORT", 6380, low=0, high=65535),
        embedded_temporal_port=read.integer("EMBEDDED_TEMPORAL_PORT", 7233, low=0, high=65535),
        embedded_temporal_ui_port=read.integer("EMBEDDED_TEMPORAL_UI_PORT", 8233, low=0, high=65535),
        outbound_allow_loopback=read.parse("OUTBOUND_ALLOW_LOOPBACK", False, _boolean, "true or false"),
        mcp_list_timeout_s=read.parse("MCP_LIST_TIMEOUT", 15.0, _seconds, "seconds between 0 and 3600"),
        v2_call_cache_ttl_s=read.integer("V2_CALL_CACHE_TTL", 3600, low=1, high=7 * 86400),
        rate_limits_enabled=read.parse("RATE_LIMITS", True, _boolean, "true or false"),
        rate_limit_plan=rate_limit_plan,
        rate_limit_per_minute=rate_limit_per_minute,
        rate_limit_burst=rate_limit_burst,
        rate_limit_cache_s=read.parse("RATE_LIMIT_CACHE_S", 5.0, _seconds, "seconds between 0 and 3600"),
        rate_limit_timeout_s=read.parse("RATE_LIMIT_TIMEOUT_S", 10.0, _seconds, "seconds between 0 and 3600"),
        client_tool_timeout_s=read.parse(
            "CLIENT_TOOL_TIMEOUT", 86400.0, _long_wait, "seconds between 0 and 2592000 (30 days)"
        ),
        database_timeouts=_database_timeouts(read),
        otel_exporter_otlp_endpoint=read.url("OTEL_EXPORTER_OTLP_ENDPOINT", ("http", "https")),
        otel_exporter_otlp_headers=read.parse(
            "OTEL_EXPORTER_OTLP_HEADERS", {}, _otlp_headers, "comma-separated key=value pairs", secret=True
        ),
        otel_service_name=read.text("OTEL_SERVICE_NAME", "everloop"),
        otlp_export_retry_after_s=read.parse(
            "OTLP_EXPORT_RETRY_AFTER", 60.0, _seconds, "seconds between 0 and 3600"
        ),
        replay_wait_s=read.parse("REPLAY_WAIT_S", 30.0, _replay_wait, "seconds from 0 to 300"),
        drift_window_s=read.parse("DRIFT_WINDOW", 86400.0, _duration, _DURATION_EXPECTED),
        drift_baseline_s=read.parse("DRIFT_BASELINE", 7 * 86400.0, _duration, _DURATION_EXPECTED),
        drift_p_value=read.parse("DRIFT_P_VALUE", 0.01, _probability, "a number between 0 and 1"),
        drift_min_samples=read.integer("DRIFT_MIN_SAMPLES", 30, low=5, high=1_000_000),
        drift_interval_s=read.parse("DRIFT_INTERVAL", 3600.0, _duration, _DURATION_EXPECTED),
        drift_max_traces=read.integer("DRIFT_MAX_TRACES", 20_000, low=100, high=10_000_000),
        knowledge_max_file_bytes=read.integer(
            "KNOWLEDGE_MAX_FILE_BYTES", 10 * 1024 * 1024, low=1024, high=1024 * 1024 * 1024
        ),
        knowledge_upload_url_ttl_s=read.integer("KNOWLEDGE_UPLOAD_URL_TTL_S", 900, low=10, high=7 * 86400),
        knowledge_max_chunks_per_document=read.integer(
            "KNOWLEDGE_MAX_CHUNKS_PER_DOCUMENT", 5000, low=10, high=1_000_000
        ),
        knowledge_max_bases_per_owner=read.integer("KNOWLEDGE_MAX_BASES_PER_OWNER", 100, low=1, high=100_000),
        webhook_timeout_s=read.parse("WEBHOOK_TIMEOUT", 10.0, _webhook_timeout, "seconds between 0 and 60"),
        webhook_retry_schedule_s=read.parse(
            "WEBHOOK_RETRY_SCHEDULE",
            WEBHOOK_RETRY_SCHEDULE_DEFAULT,
            _webhook_schedule,
            "comma-separated seconds (1 to 30 waits, each 0 to 86400)",
        ),
        webhook_disable_after_s=read.parse(
            "WEBHOOK_DISABLE_AFTER", 5 * 86400.0, _duration, _DURATION_EXPECTED
        ),
        metrics_token=read.parse(
            "METRICS_TOKEN", None, _metrics_token, "at least 16 characters, no spaces", secret=True
        ),
        worker_metrics_host=read.text("WORKER_METRICS_HOST", "127.0.0.1"),
        worker_metrics_port=read.integer("WORKER_METRICS_PORT", 0, low=0, high=65535) or None,
        api_graceful_shutdown_s=read.integer("API_GRACEFUL_SHUTDOWN_S", 15, low=1, high=3600),
        worker_liveness_file=read.parse("WORKER_LIVENESS_FILE", None, Path, "a file path"),
        database_pool_size=read.integer("DB_POOL_SIZE", 10, low=1, high=1000),
        database_max_overflow=read.integer("DB_MAX_OVERFLOW", 10, low=0, high=1000),
        worker_max_concurrent_workflow_tasks=read.integer(
            "WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", DEFAULT_WORKER_WORKFLOW_TASKS, low=1, high=1000
        ),
        worker_max_concurrent_activities=read.integer(
            "WORKER_MAX_CONCURRENT_ACTIVITIES", DEFAULT_WORKER_ACTIVITIES, low=1, high=10000
        ),
        worker_max_concurrent_local_activities=read.integer(
            "WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES", DEFAULT_WORKER_LOCAL_ACTIVITIES, low=1, high=10000
        ),
        local_tool_activities=read.parse("LOCAL_TOOL_ACTIVITIES", True, _boolean, "true or false"),
    )


def _metrics_token(value: str) -> str:
    # Sent as a bearer token: long enough not to be guessed, and one word.
    if len(value) < 16 or any(c.isspace() for c in value):
        raise ValueError(value)
    return value


def _otlp_headers(value: str) -> dict[str, str]:
    # The OpenTelemetry form: `key=value` pairs, comma-separated, values URL-encoded.
    headers = {}
    for pair in filter(None, (p.strip() for p in value.split(","))):
        key, sep, given = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(pair)
        headers[key.strip()] = unquote(given.strip())
    return headers


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
