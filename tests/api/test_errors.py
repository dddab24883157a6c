from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from core.db import Database
from core.settings import Settings
from everloop.stack import Endpoints
from tests.api.routes import TEST_ROUTES
from tests.apps import app_for
from tests.conftest import make_settings


def _app(settings: Settings) -> Litestar:
    return app_for(settings, extra_handlers=TEST_ROUTES, configure_logs=False)


@pytest.fixture
async def api(settings: Settings, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=_app(settings)) as client:
        yield client


async def test_unknown_route_is_a_json_404(api: AsyncTestClient[Litestar]) -> None:
    response = await api.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "Not Found", "status": 404}


async def test_wrong_method_is_a_json_405(api: AsyncTestClient[Litestar]) -> None:
    response = await api.delete("/health")
    assert response.status_code == 405
    assert response.json()["status"] == 405


async def test_domain_errors_map_to_their_status(api: AsyncTestClient[Litestar]) -> None:
    response = await api.get("/v1/_test/conflict")
    assert response.status_code == 409
    assert response.json() == {"error": "agent is archived", "status": 409}
    response = await api.get("/v1/_test/invalid")
    assert response.json() == {"error": "too long", "status": 400, "field": "name"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "count": 1}, "name"),
        ({"name": "a", "count": "many"}, "count"),
        ({"name": "a"}, "count"),
        ({"name": "a", "count": 1, "extra": True}, "extra"),
    ],
)
async def test_validation_errors_name_the_field(
    api: AsyncTestClient[Litestar], body: dict[str, object], field: str
) -> None:
    response = await api.post("/v1/_test/items", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["status"] == 400
    assert field in payload["field"]
    assert field in payload["error"]


async def test_malformed_json_is_a_400_in_the_error_form(api: AsyncTestClient[Litestar]) -> None:
    response = await api.post(
        "/v1/_test/items", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert set(response.json()) >= {"error", "status"}


async def test_unhandled_error_is_generic_and_its_request_id_is_logged(
    api: AsyncTestClient[Litestar],
) -> None:
    with capture_logs() as logs:
        response = await api.get("/v1/_test/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "Internal server error"
    assert "hunter2" not in response.text and "Traceback" not in response.text
    request_id = body["request_id"]
    assert response.headers["x-request-id"] == request_id
    errors = [e for e in logs if e["event"] == "unhandled error"]
    assert errors and errors[0]["request_id"] == request_id
    access = [e for e in logs if e["event"] == "request"]
    assert access[-1]["request_id"] == request_id and access[-1]["status"] == 500


async def test_every_request_gets_one_access_log_line(api: AsyncTestClient[Litestar]) -> None:
    with capture_logs() as logs:
        await api.get("/health", headers={"x-request-id": "client-chosen-id"})
        await api.get("/v1/nothing-here")
    access = [e for e in logs if e["event"] == "request"]
    assert [(e["method"], e["path"], e["status"]) for e in access] == [
        ("GET", "/health", 200),
        ("GET", "/v1/nothing-here", 404),
    ]
    assert access[0]["request_id"] == "client-chosen-id"
    assert all(isinstance(e["duration_ms"], float) for e in access)


async def test_an_unsafe_request_id_is_replaced(api: AsyncTestClient[Litestar]) -> None:
    response = await api.get("/health", headers={"x-request-id": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32


async def test_body_over_the_limit_is_413(endpoints: Endpoints, db: Database) -> None:
    small = make_settings(endpoints, MAX_REQUEST_BODY_BYTES="2048")
    async with AsyncTestClient(app=_app(small)) as api:
        ok = await api.post("/v1/_test/upload", content=b"x" * 2048)
        assert ok.json() == {"size": 2048}
        response = await api.post("/v1/_test/upload", content=b"x" * 2049)
        assert response.status_code == 413
        assert response.json()["status"] == 413

    # No Content-Length (chunked upload): the limit must hold on the bytes actually received,
    # and reading must stop there. Driven as raw ASGI, since the test client always sets a length.
    app = _app(small)
    chunks = [b"y" * 1024] * 10
    received: list[int] = []
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        received.append(1)
        return {"type": "http.request", "body": chunks[len(received) - 1], "more_body": len(received) < 10}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/_test/upload",
        "raw_path": b"/v1/_test/upload",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    assert b'"status":413' in b"".join(m.get("body", b"") for m in sent)  # type: ignore[misc]
    assert len(received) == 3  # 3 KiB read, then it stopped


async def test_cors_allows_only_listed_origins_with_credentials(endpoints: Endpoints, db: Database) -> None:
    cors = make_settings(endpoints, CORS_ORIGINS="https://app.example.com")
    async with AsyncTestClient(app=_app(cors)) as api:
        preflight = await api.options(
            "/health",
            headers={"origin": "https://app.example.com", "access-control-request-method": "GET"},
        )
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        assert preflight.headers["access-control-allow-credentials"] == "true"
        allowed = await api.get("/health", headers={"origin": "https://app.example.com"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        other = await api.get("/health", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_no_cors_headers_by_default(api: AsyncTestClient[Litestar]) -> None:
    response = await api.get("/health", headers={"origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
