"""The connections the API holds for one lifespan, closed when it ends (api/app.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import redis.asyncio as redis
import structlog
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from core import bus, temporal
from core.crypto import SecretBox, secret_box
from core.db import Database
from core.errors import ServiceUnavailable
from core.settings import AuthMode, Settings
from services import auth
from services.credential_checks import CredentialChecks
from services.event_hub import Hub
from services.last_sequences import LastSequences
from services.rate_limits import RateLimits

log = structlog.get_logger("everloop.api")

CHECK_TIMEOUT_S = 3.0


def rate_limited(settings: Settings) -> bool:
    # AUTH_MODE=none has one caller, the machine's own user, and no limits (docs/rate_limits.md).
    return settings.rate_limits_enabled and settings.auth_mode is not AuthMode.NONE


class Services:
    def __init__(self, settings: Settings, database_url: str, redis_url: str, temporal_address: str) -> None:
        self.settings = settings
        self.db = Database(
            database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            timeouts=settings.database_timeouts,
        )
        self.redis: redis.Redis = bus.connect(redis_url)
        # Every SSE stream of the process shares its one Redis subscription.
        self.events = Hub(self.redis)
        # And asks PostgreSQL for their sessions' last sequences together.
        self.last_sequences = LastSequences(self.db)
        # And share the answer to "is my credential still valid?" with streams of the same one.
        self.credential_checks = CredentialChecks(self.db, settings.auth_jwt_secret)
        self.temporal_address = temporal_address
        self._temporal: Client | None = None
        self.secrets: SecretBox | None = secret_box(settings)
        # One for the lifespan: its cache and pending reads are shared by every request.
        self.rate_limits = RateLimits(self.db, self.redis, settings) if rate_limited(settings) else None
        self.accounts_ready = False
        self._accounts_lock = asyncio.Lock()

    async def ensure_accounts(self) -> None:
        """The configured accounts exist: AUTH_MODE=none's built-in admin, or ADMIN_EMAIL's admin.
        Made at start-up; when PostgreSQL did not answer then, by the first request that needs
        them (else every agent made meanwhile would name an owner that is not there)."""
        if self.accounts_ready:
            return
        async with self._accounts_lock:
            if self.accounts_ready:
                return
            settings = self.settings
            async with self.db.session() as db:
                if settings.auth_mode is AuthMode.NONE:
                    await auth.ensure_builtin_admin(db)
                elif settings.admin_email and settings.admin_password:
                    await auth.ensure_admin(db, settings.admin_email, settings.admin_password)
            self.accounts_ready = True

    async def temporal(self) -> Client:
        """The Temporal client, connected on first use (so the API starts while Temporal is down)."""
        if self._temporal is None:
            try:
                self._temporal = await temporal.connect(
                    self.temporal_address, self.settings.temporal_namespace
                )
            except RuntimeError as exc:  # the SDK's "Failed client connect"
                raise ServiceUnavailable("Temporal is not answering, try again shortly") from exc
        return self._temporal

    async def _check_temporal(self) -> None:
        client = await self.temporal()
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=self.settings.temporal_namespace)
        )

    async def _check_redis(self) -> None:
        await self.redis.ping()

    async def check(self) -> list[str]:
        """Asks each backing service at once; returns one line per service that did not answer."""

        async def probe(name: str, call: Awaitable[None]) -> str | None:
            try:
                await asyncio.wait_for(call, CHECK_TIMEOUT_S)
            except TimeoutError:
                return f"{name}: no answer within {CHECK_TIMEOUT_S:.0f} s"
            except Exception as exc:
                return f"{name}: {type(exc).__name__}: {str(exc)[:300]}"
            return None

        results = await asyncio.gather(
            probe("postgres", self.db.ping()),
            probe("redis", self._check_redis()),
            probe("temporal", self._check_temporal()),
        )
        problems = [r for r in results if r]
        if problems:
            log.warning("not ready", problems=problems)
        return problems

    async def close(self) -> None:
        await self.events.close()
        await self.db.dispose()
        await self.redis.aclose()
