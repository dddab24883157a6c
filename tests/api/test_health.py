from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

import core
from core.db import Database
from everloop.stack import Endpoints
from everloop.stack.process import free_port
from tests.apps import app_for
from tests.conftest import make_settings


async def test_health_reports_version_and_modes(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "version": core.__version__,
        "runner_mode": "temporal",
        "auth_mode": "none",
    }


async def test_ready_when_every_service_answers(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


@pytest.mark.parametrize(
    ("setting", "service"),
    [("REDIS_URL", "redis"), ("DATABASE_URL", "postgres"), ("TEMPORAL_ADDRESS", "temporal")],
)
async def test_not_ready_names_the_service_that_is_down(
    endpoints: Endpoints, db: Database, setting: str, service: str
) -> None:
    # A real client pointed at a port where nothing listens: the same failure as a stopped service.
    dead = {
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/everloop",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    }[setting]
    app = app_for(make_settings(endpoints, **{setting: dead}), configure_logs=False)
    async with AsyncTestClient(app=app) as api:
        response = await api.get("/ready")
        health = await api.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["detail"].startswith(f"{service}:")
    assert [part.split(":")[0] for part in body["detail"].split("; ")] == [service]
    assert health.status_code == 200  # liveness does not depend on the services


async def test_temporal_down_is_a_503_on_loop_routes(endpoints: Endpoints, db: Database) -> None:
    from tests import factories

    settings = make_settings(endpoints, TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as api:
        agent = await factories.agent(api)
        session = await factories.session(api, agent["id"])
        base = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
        for method, path in (("POST", f"{base}/cancel"), ("GET", f"{base}/workflow")):
            response = await api.request(method, path)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"] == "Temporal is not answering, try again shortly"
            assert response.headers["retry-after"] == "5"
        # Posting still works: the message is kept, and the sweeper dispatches it later.
        posted = await api.post(f"{base}/messages", json=factories.text_message("hi"))
        assert posted.status_code == 201
