from __future__ import annotations

from litestar.testing import AsyncTestClient

from core.db import Database
from everloop.stack import Endpoints
from tests.apps import app_for
from tests.conftest import make_settings
from tests.factories import Client

CHAT = {"model": "sim-1", "messages": [{"role": "user", "content": "hello there"}]}


async def test_the_api_serves_the_simulator_when_enabled(client: Client) -> None:
    response = await client.post("/simulator/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Echo: hello there"
    spec = (await client.get("/api-doc/openapi.json")).json()
    assert "/simulator/v1/chat/completions" in spec["paths"]


async def test_the_simulator_is_off_unless_enabled(endpoints: Endpoints, db: Database) -> None:
    app = app_for(make_settings(endpoints, EVERLOOP_SIMULATOR="false"), configure_logs=False)
    async with AsyncTestClient(app=app) as api:
        response = await api.post("/simulator/v1/chat/completions", json=CHAT)
    assert response.status_code == 404
