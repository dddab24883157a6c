"""The stack the `/v2` knowledge, embeddings, rerank and OCR tests share: a server of the real app on
the embedded services, the deployment's admin with an API key, and the simulator as a shared
provider with a chat model, an embedding model and a chat model whose provider always fails
(`stack`, a fixture: import it into the test module). Small caps, so that a test passes them cheaply."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from opperai import Opper
from sqlalchemy import update

from core.db import Database
from core.db.models import LlmModel
from everloop.stack import Endpoints
from tests.api.test_auth_full import ADMIN_EMAIL, ADMIN_PASSWORD, clear_rate_limits, full_settings
from tests.apps import app_for
from tests.servers import running

MAX_BASES = 8
# KNOWLEDGE_MAX_FILE_BYTES: a direct upload's form may be MULTIPART_OVERHEAD_BYTES (64 KB) larger.
MAX_FILE_BYTES = 100_000


@dataclass
class Stack:
    url: str
    admin_key: str  # the deployment's admin: owns the shared simulator provider and its models
    embedder: str  # the simulator model of kind "embedding", by its model_id


async def _key(http: httpx.AsyncClient, access_token: str) -> str:
    made = await http.post(
        "/v1/auth/api-keys", json={"name": "sdk"}, headers={"Authorization": f"Bearer {access_token}"}
    )
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


@pytest.fixture
async def stack(endpoints: Endpoints, db: Database, simulator_url: str) -> AsyncIterator[Stack]:
    await clear_rate_limits(endpoints)
    settings = full_settings(
        endpoints,
        KNOWLEDGE_MAX_CHUNKS_PER_DOCUMENT="50",
        KNOWLEDGE_MAX_BASES_PER_OWNER=str(MAX_BASES),
        KNOWLEDGE_MAX_FILE_BYTES=str(MAX_FILE_BYTES),
    )
    with running(app_for(settings, configure_logs=False)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            login = await http.post("/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            key = await _key(http, login.json()["access_token"])
            auth = {"Authorization": f"Bearer {key}"}
            provider = await http.post(
                "/v1/llm-providers",
                json={"name": "Sim", "provider_type": "simulator", "base_url": simulator_url},
                headers=auth,
            )
            assert provider.status_code == 201, provider.text
            for model_id, model_settings in (
                ("sim-chat", {}),
                ("sim-embed", {}),
                ("sim-down", {"error": {"status": 500}}),  # its provider fails: a 502
            ):
                made = await http.post(
                    f"/v1/llm-providers/{provider.json()['id']}/models",
                    json={"model_id": model_id, "settings": model_settings},
                    headers=auth,
                )
                assert made.status_code == 201, made.text
            async with db.session() as session:
                await session.execute(
                    update(LlmModel).where(LlmModel.model_id == "sim-embed").values(kind="embedding")
                )
                await session.commit()
            yield Stack(server.url, key, "sim-embed")


def sdk(stack: Stack, key: str | None = None) -> Opper:
    return Opper(http_bearer=key or stack.admin_key, server_url=f"{stack.url}/v2")
