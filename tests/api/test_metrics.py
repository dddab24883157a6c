"""`GET /metrics` of the API: who may scrape it, and requests labelled by route template only
(tests/loop/test_metrics.py scrapes it during real turns and streams)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from core.db import Database
from everloop.stack import Endpoints
from tests.api.test_auth import EMAIL, PASSWORD, _settings
from tests.apps import app_for

TOKEN = "metrics-token-for-the-tests-0123"


def _requests(text: str) -> dict[tuple[str, str, str], float]:
    """everloop_http_requests_total by (method, route, status)."""
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "everloop_http_requests_total"
    }


async def test_requests_are_labelled_by_route_template_never_by_path(
    client: AsyncTestClient[Litestar],
) -> None:
    # The app, and its registry, may have served other tests: counters are compared, not read.
    before = _requests((await client.get("/metrics")).text)
    agent_id = str(uuid.uuid4())
    assert (await client.get(f"/v1/agents/{agent_id}")).status_code == 404  # a route, no such agent
    assert (await client.get(f"/nowhere/{agent_id}")).status_code == 404  # no route at all
    assert (await client.request("BREW", "/health")).status_code == 405
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert agent_id not in response.text
    after = _requests(response.text)

    def delta(method: str, route: str, status: str) -> float:
        key = (method, route, status)
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("GET", "/v1/agents/{agent_id}", "404") == 1
    assert delta("GET", "unmatched", "404") == 1
    assert delta("other", "unmatched", "405") == 1  # routing refused the method
    # The process's own figures and both pools, read at the scrape.
    families = list(text_string_to_metric_families(response.text))
    assert {
        "process_resident_memory_bytes",
        "everloop_db_pool_connections",
        "everloop_redis_pool_connections",
    } <= {f.name for f in families}
    # The pool's ceiling: its size and SQLAlchemy's overflow (10), which `in_use` may reach.
    gauges = {s.name: s.value for f in families for s in f.samples}
    assert gauges["everloop_db_pool_max_connections"] == gauges["everloop_db_pool_size"] + 10


@pytest.fixture
async def admin_mode(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """AUTH_MODE=admin with METRICS_TOKEN set."""
    app = app_for(_settings(endpoints, METRICS_TOKEN=TOKEN), configure_logs=False)
    async with AsyncTestClient(app=app) as client:
        yield client


async def test_with_a_token_only_the_token_opens_it(admin_mode: AsyncTestClient[Litestar]) -> None:
    token = {"Authorization": f"Bearer {TOKEN}"}
    refused_before = _requests((await admin_mode.get("/metrics", headers=token)).text).get(
        ("GET", "/metrics", "401"), 0.0
    )
    missing = await admin_mode.get("/metrics")
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")
    assert missing.json() == {"error": "the metrics token is required", "status": 401}
    assert (await admin_mode.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    # Not even the admin's own credential: the scraper's token is for metrics, and only it is.
    login = await admin_mode.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await admin_mode.get("/metrics", headers=admin)).status_code == 401
    scraped = await admin_mode.get("/metrics", headers=token)
    assert scraped.status_code == 200
    assert _requests(scraped.text)[("GET", "/metrics", "401")] - refused_before == 3


async def test_without_a_token_it_is_off_outside_auth_mode_none(endpoints: Endpoints, db: Database) -> None:
    async with AsyncTestClient(app=app_for(_settings(endpoints), configure_logs=False)) as client:
        response = await client.get("/metrics")
    assert response.status_code == 403
    assert "METRICS_TOKEN" in response.json()["error"]
