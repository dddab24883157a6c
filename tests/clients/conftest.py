"""Everruns' own clients against a running Everloop: the API behind a real server, a worker on its
own task queue, the simulator as the LLM, AUTH_MODE=full, and one user holding an API key, the way
someone who switches from Everruns would set it up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from core import bus
from core.db import Database
from everloop.stack import Endpoints
from everloop.worker import build_worker
from tests.api.test_auth_full import ADMIN_EMAIL, ADMIN_PASSWORD, clear_rate_limits, full_settings
from tests.apps import app_for
from tests.servers import running


@dataclass
class Everloop:
    url: str  # the server's base URL: the SDK's `base_url` (it adds `/v1/...` itself)
    api_key: str  # `evr_...`, as the SDK's EVERRUNS_API_KEY
    http: httpx.AsyncClient  # the same user, through plain HTTP (`Authorization: Bearer <key>`)
    model_id: str  # a simulator model the user owns
    email: str
    password: str

    def agent_url(self, agent_id: str) -> str:
        """What `AgentClient(agent_url=...)` takes: the agent's own routes (its sessions)."""
        return f"{self.url}/v1/agents/{agent_id}"


async def _made(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(path, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@asynccontextmanager
async def serving(
    endpoints: Endpoints,
    db: Database,
    temporal_client: Client,
    simulator_url: str,
    task_queue: str,
    **env: str,
) -> AsyncIterator[Everloop]:
    """The whole stack, its admin holding an API key; `env` adds settings (e.g. CORS_ORIGINS)."""
    await clear_rate_limits(endpoints)
    settings = full_settings(endpoints, TEMPORAL_TASK_QUEUE=task_queue, **env)
    redis = bus.connect(endpoints.redis_url)
    worker = build_worker(temporal_client, settings, db, redis)
    try:
        with running(app_for(settings, configure_logs=False)) as server:
            async with worker, httpx.AsyncClient(base_url=server.url, timeout=30) as anon:
                # The deployment's admin: who may point a provider at the loopback simulator.
                email, password = ADMIN_EMAIL, ADMIN_PASSWORD
                signed_in = await anon.post("/v1/auth/login", json={"email": email, "password": password})
                assert signed_in.status_code == 200, signed_in.text
                with_token = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
                key = await anon.post("/v1/auth/api-keys", json={"name": "sdk"}, headers=with_token)
                assert key.status_code == 201, key.text
                api_key = key.json()["key"]
                async with httpx.AsyncClient(
                    base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {api_key}"}
                ) as http:
                    provider = await _made(
                        http,
                        "/v1/llm-providers",
                        {"name": "Sim", "provider_type": "simulator", "base_url": simulator_url},
                    )
                    model = await _made(
                        http, f"/v1/llm-providers/{provider['id']}/models", {"model_id": "sim-1"}
                    )
                    yield Everloop(server.url, api_key, http, model["id"], email, password)
    finally:
        await redis.aclose()


@pytest.fixture
async def everloop(
    endpoints: Endpoints, db: Database, temporal_client: Client, simulator_url: str, task_queue: str
) -> AsyncIterator[Everloop]:
    async with serving(endpoints, db, temporal_client, simulator_url, task_queue) as stack:
        yield stack
