"""Behind a reverse proxy: the client's address (per-IP rate limits) and scheme come from
`X-Forwarded-For`/`-Proto` only when the connection is from EVERLOOP_TRUSTED_PROXIES; anyone else
cannot pick the address their attempts are counted under."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from core import bus
from core.db import Database
from everloop.stack import Endpoints
from tests.api.test_auth_full import clear_rate_limits, full_settings
from tests.apps import app_for
from tests.servers import running

FORWARDED = {"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}


async def _counted_ips(endpoints: Endpoints) -> set[str]:
    client: redis.Redis = bus.connect(endpoints.redis_url)
    try:
        keys = await client.keys("everloop:ratelimit:login:ip:*")
    finally:
        await client.aclose()
    return {(k.decode() if isinstance(k, bytes) else k).rsplit(":", 1)[1] for k in keys}


@pytest.mark.parametrize(("trusted", "counted"), [("127.0.0.1", "203.0.113.9"), ("10.0.0.1", "127.0.0.1")])
async def test_the_forwarded_address_counts_only_from_a_trusted_proxy(
    endpoints: Endpoints, db: Database, trusted: str, counted: str
) -> None:
    await clear_rate_limits(endpoints)
    settings = full_settings(endpoints, EVERLOOP_TRUSTED_PROXIES=trusted)
    options: dict[str, Any] = {
        k: v for k, v in settings.uvicorn_options().items() if k not in ("host", "port")
    }
    with running(app_for(settings, configure_logs=False), "/health", **options) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            body = {"email": "nobody@example.com", "password": "wrong password"}
            assert (await client.post("/api/auth/login", json=body, headers=FORWARDED)).status_code == 401
    assert await _counted_ips(endpoints) == {counted}


def test_trusted_proxies_must_be_addresses() -> None:
    from core.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="EVERLOOP_TRUSTED_PROXIES"):
        load_settings({"EVERLOOP_TRUSTED_PROXIES": "proxy.internal"})
    assert load_settings({"EVERLOOP_TRUSTED_PROXIES": "10.0.0.0/8, ::1"}).trusted_proxies == (
        "10.0.0.0/8",
        "::1",
    )
