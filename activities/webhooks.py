"""One webhook delivery attempt (docs/webhooks.md): read the delivery, POST it signed, store the
outcome. Each of the two stores is its own transaction, waiting out a database outage inside the
attempt (`persist`); the POST is bounded by WEBHOOK_TIMEOUT and sent through the checked, pinned
connection (public addresses only, unless an admin allowed a webhook others), without redirects."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid

import httpx2
from temporalio import activity

from activities.heartbeat import heartbeating
from activities.persist import persist
from core.crypto import SecretBox, SecretsError
from core.db import Database
from core.errors import ServiceUnavailable
from core.net import NetPolicy, PinnedTransport
from core.schemas.webhooks import AttemptInput, AttemptResult, WebhookLoop
from core.settings import Settings
from services import webhook_signing, webhooks

SNIPPET_BYTES = 300  # of a failed answer's body, kept as its error
# Receivers' hosts whose connections are kept open between attempts (the least recently used closed).
WEBHOOK_HOSTS = 256


class WebhookActivities:
    def __init__(self, db: Database, settings: Settings, secrets: SecretBox | None) -> None:
        self.db = db
        self.settings = settings
        self.secrets = secrets
        # One client per kind of destination, made on first use and kept, both on one TLS context:
        # a context takes tens of ms of CPU to build (measured: with one per attempt, a burst of
        # deliveries held the worker's event loop for seconds). Each pools connections per
        # receiver's host name (PinnedTransport: one inner pool per host, at most WEBHOOK_HOSTS
        # kept), never per address: webhooks of other hosts, and owners, behind one address never
        # share a connection, nor its certificate check.
        self._clients: dict[bool, httpx2.AsyncClient] = {}
        self._tls: ssl.SSLContext | None = None

    def client(self, allow_private: bool) -> httpx2.AsyncClient:
        """The public-only pinned client (each request's host checked and pinned), or, for an
        admin's webhook with `allow_private`, a plain one. No redirects, no proxies from the
        environment (a proxy would connect by name)."""
        found = self._clients.get(allow_private)
        if found is None:
            if self._tls is None:
                self._tls = httpx2.create_ssl_context()
            transport: httpx2.AsyncBaseTransport = (
                # Not pinned: it connects by name, so its pool is already keyed by host name.
                httpx2.AsyncHTTPTransport(verify=self._tls)
                if allow_private
                else PinnedTransport(
                    NetPolicy(allow_loopback=self.settings.outbound_allow_loopback),
                    ssl_context=self._tls,
                    max_hosts=WEBHOOK_HOSTS,
                )
            )
            found = self._clients[allow_private] = httpx2.AsyncClient(
                transport=transport,
                follow_redirects=False,
                trust_env=False,
                timeout=self.settings.webhook_timeout_s,
            )
        return found

    @activity.defn(name=WebhookLoop.ATTEMPT)
    async def attempt(self, params: AttemptInput) -> AttemptResult:
        delivery_id, series = uuid.UUID(params.delivery_id), params.series
        what = f"webhook delivery {delivery_id}"
        attempt = await persist(
            self.db, lambda db: webhooks.begin_attempt(db, delivery_id, series), what=f"{what}:begin"
        )
        if attempt is None:
            return AttemptResult(outcome="done")
        status_code: int | None
        error: str | None
        try:
            secret = webhooks.open_secret(self.secrets, attempt)
        except (SecretsError, ServiceUnavailable) as exc:  # the server's keys changed: retried on schedule
            status_code, error = None, f"cannot open the webhook's secret: {exc}"
        else:
            status_code, error = await self.post(attempt, secret)
        outcome = await persist(
            self.db,
            lambda db: webhooks.record_attempt(
                db,
                delivery_id,
                series,
                status_code=status_code,
                error=error,
                next_wait_s=params.next_wait_s,
                disable_after_s=self.settings.webhook_disable_after_s,
            ),
            what=f"{what}:record",
        )
        return AttemptResult(outcome=outcome, status_code=status_code)

    async def post(self, attempt: webhooks.Attempt, secret: str) -> tuple[int | None, str | None]:
        """The receiver's status code (None when there was no answer) and, unless 2xx, why."""
        timestamp = int(time.time())
        headers = webhook_signing.headers(secret, str(attempt.delivery_id), timestamp, attempt.body)
        limit = self.settings.webhook_timeout_s
        client = self.client(attempt.allow_private)
        try:
            async with (
                heartbeating(),
                asyncio.timeout(limit),
                client.stream("POST", attempt.url, content=attempt.body, headers=headers) as response,
            ):
                if 200 <= response.status_code < 300:
                    return response.status_code, None
                snippet = b""
                async for chunk in response.aiter_bytes():
                    snippet += chunk
                    if len(snippet) >= SNIPPET_BYTES:
                        break
                said = snippet[:SNIPPET_BYTES].decode(errors="replace").strip()
                return response.status_code, f"HTTP {response.status_code}" + (f": {said}" if said else "")
        except TimeoutError:
            return None, f"no answer within {limit:g} s (WEBHOOK_TIMEOUT)"
        except httpx2.HTTPError as exc:
            return None, webhooks.describe_error(exc)
