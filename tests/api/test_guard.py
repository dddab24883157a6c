"""Browser guard: a page of another site cannot make this server change anything (no CSRF, also
through "simple" requests that need no CORS preflight), and with AUTH_MODE=none a page that
rebinds its DNS name to 127.0.0.1 reaches nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from everloop.stack import Endpoints
from tests.api.test_auth_full import full_settings, register
from tests.apps import app_for
from tests.conftest import make_settings

STDIO = {"name": "x", "transport": "stdio", "command": "sh", "args": ["-c", "touch {marker}"]}


async def test_a_cross_site_simple_request_cannot_start_a_command(
    client: AsyncTestClient[Litestar], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    body = json.dumps({**STDIO, "args": ["-c", f"touch {marker}"]})
    # What a form post (enctype=text/plain) or a no-cors fetch from any web page sends.
    headers = {"content-type": "text/plain", "origin": "https://evil.example"}
    response = await client.post("/v1/mcp-servers", content=body, headers=headers)
    assert response.status_code == 403, response.text
    assert "another site" in response.json()["error"]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://evil.example", 403),
        ("null", 403),  # sandboxed frames and file:// pages
        ("http://testserver.local", 201),  # this server
        ("https://app.example.com", 201),  # CORS_ORIGINS
        ("https://everloop.example.com", 201),  # EVERLOOP_PUBLIC_URL
        (None, 201),  # an API client, not a browser
    ],
)
async def test_changes_need_a_trusted_origin_when_one_is_given(
    endpoints: Endpoints, db: Database, origin: str | None, expected: int
) -> None:
    settings = make_settings(
        endpoints, CORS_ORIGINS="https://app.example.com", EVERLOOP_PUBLIC_URL="https://everloop.example.com"
    )
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as api:
        headers = {"origin": origin} if origin else {}
        response = await api.post("/v1/agents", json={"name": "a"}, headers=headers)
        assert response.status_code == expected, response.text
        # Reading is not a change: any origin may (CORS decides what a page may see).
        assert (await api.get("/v1/agents", headers=headers)).status_code == 200


async def test_the_referer_counts_when_there_is_no_origin(client: AsyncTestClient[Litestar]) -> None:
    refused = await client.post(
        "/v1/agents", json={"name": "a"}, headers={"referer": "https://evil.example/page.html"}
    )
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("attacker.example:8000", 400),  # a DNS-rebinding page's own name
        ("[::1]evil.example", 400),  # not a Host at all
        ("127.0.0.1:8000", 200),
        ("localhost:8000", 200),
        ("[::1]:8000", 200),
        ("dev.localhost", 200),
        ("testserver.local", 200),  # EVERLOOP_ALLOWED_HOSTS (see tests/conftest.py)
    ],
)
async def test_auth_mode_none_answers_only_loopback_hosts(
    client: AsyncTestClient[Litestar], host: str, expected: int
) -> None:
    response = await client.get("/v1/agents", headers={"host": host})
    assert response.status_code == expected, response.text
    if expected == 400:
        assert "EVERLOOP_ALLOWED_HOSTS" in response.json()["error"]


async def test_other_modes_answer_any_host_but_not_cross_site_logins(
    endpoints: Endpoints, db: Database
) -> None:
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as api:
        assert (
            await api.get("/api/auth/config", headers={"host": "everloop.example.com"})
        ).status_code == 200
        tokens = await register(api)
        # Login CSRF: a page of another site signing the browser in to the attacker's account.
        body = json.dumps({"email": tokens["email"], "password": "long enough"})
        forged = await api.post(
            "/api/auth/login",
            content=body,
            headers={"content-type": "text/plain", "origin": "https://evil.example"},
        )
        assert forged.status_code == 403
        assert (await api.post("/api/auth/login", content=body)).status_code == 200
