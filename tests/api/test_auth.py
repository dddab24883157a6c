"""AUTH_MODE=admin: every route but the open ones needs a credential; tokens and keys are checked."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import delete, select, update

from core import bus
from core.db import Database
from core.db.models import ApiKey, User
from core.settings import SettingsError, load_settings
from everloop.stack import Endpoints
from services import auth
from tests.apps import app_for
from tests.conftest import make_settings

EMAIL, PASSWORD = "boss@example.com", "correct horse battery"
SECRET = "s" * 48
# /metrics is open to the sign-in: its own token guards it (tests/api/test_metrics.py).
OPEN = re.compile(
    r"^/(health|ready|metrics$|api-doc|swagger-ui|simulator/|(api|v1)/auth/(config|login|logout|register|refresh|oauth|callback))"
)


def _settings(endpoints: Endpoints, **env: str):  # type: ignore[no-untyped-def]
    return make_settings(
        endpoints,
        AUTH_MODE="admin",
        ADMIN_EMAIL=EMAIL,
        ADMIN_PASSWORD=PASSWORD,
        AUTH_JWT_SECRET=SECRET,
        **env,
    )


@pytest.fixture
async def anon(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app_for(_settings(endpoints), configure_logs=False)) as client:
        yield client


async def _login(client: AsyncTestClient[Litestar]) -> str:
    response = await client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    token = body["access_token"]
    assert isinstance(token, str)
    return token


async def test_every_protected_route_needs_a_credential(anon: AsyncTestClient[Litestar]) -> None:
    spec = (await anon.get("/api-doc/openapi.json")).json()
    checked = 0
    for path, item in spec["paths"].items():
        for method in item:
            if method not in {"get", "post", "put", "patch", "delete"} or OPEN.match(path):
                continue
            concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
            response = await anon.request(method.upper(), concrete, json={})
            assert response.status_code == 401, (method, path, response.text)
            # Under /v2, Opper's error form (api/errors.py).
            expected = (
                {"detail": "a credential is required"}
                if path.startswith("/v2/")
                else {"error": "a credential is required", "status": 401}
            )
            assert response.json() == expected, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"
            # ...and the spec says so, so clients (and Swagger UI's Authorize) know to send one.
            assert item[method].get("security") == [{"bearer": []}, {"cookie": []}], (method, path)
            checked += 1
    assert checked > 25  # the walk covered the API, not an empty spec
    open_operations = [
        op
        for path, item in spec["paths"].items()
        if OPEN.match(path)
        for op in item.values()
        if isinstance(op, dict)
    ]
    assert open_operations and all("security" not in op for op in open_operations)


async def test_open_routes_stay_open(anon: AsyncTestClient[Litestar]) -> None:
    assert (await anon.get("/health")).status_code == 200
    config = (await anon.get("/v1/auth/config")).json()
    # Issue 12 adds Everruns' UI fields (password_auth_enabled, signup_enabled) beside the seed's.
    assert config == {
        "mode": "admin",
        "registration_open": False,
        "oauth_providers": [],
        "password_auth_enabled": True,
        "signup_enabled": False,
    }


async def test_login_then_token_cookie_and_me(anon: AsyncTestClient[Litestar]) -> None:
    assert (await anon.post("/api/auth/login", json={"email": EMAIL, "password": "wrong"})).status_code == 401
    assert (
        await anon.post("/api/auth/login", json={"email": "x@example.com", "password": "x"})
    ).status_code == 401
    token = await _login(anon)
    me = await anon.get("/api/auth/me", headers={"authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert (me.json()["email"], me.json()["role"], me.json()["authenticated_by"]) == (EMAIL, "admin", "token")
    # The login also set the HttpOnly cookie; the test client sends it back.
    assert (await anon.get("/v1/auth/me")).json()["authenticated_by"] == "cookie"
    assert (await anon.get("/v1/agents")).status_code == 200
    # A cookie-authenticated change needs an allowed origin (CSRF).
    refused = await anon.post("/v1/agents", json={"name": "x"})
    assert refused.status_code == 403
    same_origin = await anon.post(
        "/v1/agents", json={"name": "x"}, headers={"origin": str(anon.base_url).rstrip("/")}
    )
    assert same_origin.status_code == 201
    bearer = await anon.post("/v1/agents", json={"name": "y"}, headers={"authorization": f"Bearer {token}"})
    assert bearer.status_code == 201  # a bearer token is not sent by browsers on their own
    out = await anon.post("/api/auth/logout")
    assert out.status_code == 200 and "max-age=0" in out.headers["set-cookie"].lower()
    anon.cookies.clear()
    assert (await anon.get("/v1/agents")).status_code == 401


def _forge(claims: dict[str, object], header: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


async def test_bad_tokens_are_401(anon: AsyncTestClient[Litestar], db: Database) -> None:
    token = await _login(anon)
    anon.cookies.clear()
    async with db.session() as s:
        admin = (await s.execute(select(User).where(User.email == EMAIL))).scalar_one()
    expired = auth.issue_access_token(admin, SECRET, now=datetime.now(UTC) - timedelta(hours=1))
    wrong_signature = auth.issue_access_token(admin, "x" * 48)
    alg_none = _forge(
        {"sub": str(admin.id), "typ": "access", "exp": int(datetime.now(UTC).timestamp()) + 600},
        {"alg": "none", "typ": "JWT"},
    )
    for bad in (
        expired,
        wrong_signature,
        alg_none,
        token + "x",
        "garbage",
        f"{auth.API_KEY_PREFIX}{'0' * 64}",
    ):
        response = await anon.get("/v1/agents", headers={"authorization": f"Bearer {bad}"})
        assert response.status_code == 401, bad
        assert response.json()["error"] == "the credential is invalid or expired"
    assert (await anon.get("/v1/agents", headers={"authorization": f"Bearer {token}"})).status_code == 200
    # A deleted user's token stops working at once.
    async with db.session() as s:
        await s.execute(delete(User).where(User.id == admin.id))
        await s.commit()
    assert (await anon.get("/v1/agents", headers={"authorization": f"Bearer {token}"})).status_code == 401


async def test_api_keys(anon: AsyncTestClient[Litestar], db: Database) -> None:
    token = await _login(anon)
    anon.cookies.clear()
    headers = {"authorization": f"Bearer {token}"}
    created = await anon.post("/api/auth/api-keys", json={"name": "ci"}, headers=headers)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert re.fullmatch(r"evr_[0-9a-f]{64}", key)
    assert created.json()["prefix"] == key[:12]
    listed = (await anon.get("/api/auth/api-keys", headers=headers)).json()
    assert [k["name"] for k in listed] == ["ci"] and key not in json.dumps(listed)
    assert listed[0]["last_used_at"] is None
    with_key = {"authorization": f"Bearer {key}"}
    me = await anon.get("/v1/auth/me", headers=with_key)
    assert me.json()["authenticated_by"] == "api_key"
    assert (await anon.post("/v1/agents", json={"name": "via key"}, headers=with_key)).status_code == 201
    used = (await anon.get("/api/auth/api-keys", headers=headers)).json()[0]["last_used_at"]
    assert used is not None
    # Another user's key is not found, not forbidden.
    async with db.session() as s:
        other = User(email="other@example.com", role="user")
        s.add(other)
        await s.commit()
        other_key, _ = await auth.create_api_key(s, other.id, "theirs", None)
    assert (await anon.delete(f"/api/auth/api-keys/{other_key.id}", headers=headers)).status_code == 404
    # Revoked: 401 from then on.
    assert (
        await anon.delete(f"/api/auth/api-keys/{created.json()['id']}", headers=headers)
    ).status_code == 204
    assert (await anon.get("/v1/agents", headers=with_key)).status_code == 401


async def test_an_expired_api_key_is_401(anon: AsyncTestClient[Litestar], db: Database) -> None:
    token = await _login(anon)
    key = (
        await anon.post(
            "/api/auth/api-keys",
            json={"name": "short", "expires_in_days": 1},
            headers={"authorization": f"Bearer {token}"},
        )
    ).json()
    async with db.session() as s:
        await s.execute(update(ApiKey).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        await s.commit()
    anon.cookies.clear()
    assert (
        await anon.get("/v1/agents", headers={"authorization": f"Bearer {key['key']}"})
    ).status_code == 401


async def test_login_is_rate_limited(anon: AsyncTestClient[Litestar], endpoints: Endpoints) -> None:
    redis = bus.connect(endpoints.redis_url)
    for name in await redis.keys("everloop:ratelimit:*"):
        await redis.delete(name)  # other tests' attempts from the same test client address
    await redis.aclose()
    email = f"{uuid.uuid4().hex}@example.com"
    codes = [
        (await anon.post("/api/auth/login", json={"email": email, "password": "nope"})).status_code
        for _ in range(11)
    ]
    assert codes[:10] == [401] * 10
    limited = await anon.post("/api/auth/login", json={"email": email, "password": "nope"})
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60


async def test_the_event_stream_needs_a_credential(anon: AsyncTestClient[Litestar]) -> None:
    path = f"/v1/agents/{uuid.uuid4()}/sessions/{uuid.uuid4()}/events"
    response = await anon.get(path, headers={"accept": "text/event-stream"})
    assert response.status_code == 401


def test_modes_refuse_to_start_without_what_they_need() -> None:
    with pytest.raises(SettingsError, match="needs ADMIN_EMAIL, ADMIN_PASSWORD, AUTH_JWT_SECRET"):
        load_settings({"AUTH_MODE": "admin"}).check_runnable()
    with pytest.raises(SettingsError, match="ADMIN_PASSWORD: at least 8"):
        load_settings(
            {"AUTH_MODE": "admin", "ADMIN_EMAIL": EMAIL, "ADMIN_PASSWORD": "short", "AUTH_JWT_SECRET": SECRET}
        ).check_runnable()
    with pytest.raises(SettingsError, match="AUTH_JWT_SECRET"):
        load_settings({"AUTH_JWT_SECRET": "too short"})
