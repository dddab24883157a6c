"""AUTH_MODE=full: registration, refresh-token rotation with family revocation, logout, roles, and
the event stream ending with its credential."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from core import bus
from core.db import Database
from core.db.models import ApiKey
from core.settings import Settings, SettingsError, load_settings
from everloop.stack import Endpoints
from services import event_stream
from tests.apps import app_for
from tests.conftest import make_settings
from tests.servers import running
from tests.sse import open_sse, store_and_publish

SECRET = "f" * 48
ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "root password"


def full_settings(endpoints: Endpoints, **env: str) -> Settings:
    base = {
        "AUTH_MODE": "full",
        "AUTH_JWT_SECRET": SECRET,
        "ADMIN_EMAIL": ADMIN_EMAIL,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    return make_settings(endpoints, **{**base, **env})


async def clear_rate_limits(endpoints: Endpoints) -> None:
    redis = bus.connect(endpoints.redis_url)
    for name in await redis.keys("everloop:ratelimit:*"):
        await redis.delete(name)  # other tests' attempts from the same test client address
    await redis.aclose()


@pytest.fixture
async def app(endpoints: Endpoints, db: Database) -> Litestar:
    await clear_rate_limits(endpoints)
    return app_for(full_settings(endpoints), configure_logs=False)


@pytest.fixture
async def anon(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as client:
        yield client


async def register(client: httpx.AsyncClient, email: str | None = None) -> dict[str, Any]:
    email = email or f"{uuid.uuid4().hex[:12]}@example.com"
    response = await client.post("/api/auth/register", json={"email": email, "password": "long enough"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return {**body, "email": email}


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


class As:
    """Requests carrying one user's access token."""

    def __init__(self, client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
        self.client, self.headers = client, bearer(tokens)

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path, headers=self.headers)

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.headers)

    async def patch(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.patch(path, json=body, headers=self.headers)

    async def delete(self, path: str) -> httpx.Response:
        return await self.client.delete(path, headers=self.headers)


async def login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/auth/refresh", json={"refresh_token": token})


async def test_config_says_registration_is_open(anon: AsyncTestClient[Litestar]) -> None:
    config = (await anon.get("/v1/auth/config")).json()
    # Issue 12 adds Everruns' UI fields (password_auth_enabled, signup_enabled) beside the seed's.
    assert config == {
        "mode": "full",
        "registration_open": True,
        "oauth_providers": [],
        "password_auth_enabled": True,
        "signup_enabled": True,
    }


async def test_register_signs_in_a_user(anon: AsyncTestClient[Litestar]) -> None:
    tokens = await register(anon, "New.Person@Example.com")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    assert tokens["refresh_token"] and tokens["access_token"]
    me = (await anon.get("/api/auth/me", headers=bearer(tokens))).json()
    assert (me["email"], me["role"]) == ("new.person@example.com", "user")
    assert anon.cookies.get("access_token") == tokens["access_token"]
    assert anon.cookies.get("refresh_token", path="/api/auth") == tokens["refresh_token"]


async def test_register_refuses_duplicates_short_passwords_and_bad_emails(
    anon: AsyncTestClient[Litestar],
) -> None:
    await register(anon, "taken@example.com")
    again = await anon.post(
        "/api/auth/register", json={"email": "TAKEN@example.com", "password": "whatever1"}
    )
    assert again.status_code == 409
    short = await anon.post("/api/auth/register", json={"email": "a@example.com", "password": "1234567"})
    assert short.status_code == 400 and short.json()["field"] == "password"
    bad = await anon.post("/api/auth/register", json={"email": "not an email", "password": "12345678"})
    assert bad.status_code == 400 and bad.json()["field"] == "email"


async def test_register_when_closed_is_403(endpoints: Endpoints, db: Database) -> None:
    settings = full_settings(endpoints, AUTH_REGISTRATION_OPEN="false")
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as client:
        assert (await client.get("/api/auth/config")).json()["registration_open"] is False
        response = await client.post(
            "/api/auth/register", json={"email": "x@example.com", "password": "12345678"}
        )
        assert response.status_code == 403


async def test_register_is_rate_limited(anon: AsyncTestClient[Litestar]) -> None:
    codes = [
        (
            await anon.post("/api/auth/register", json={"email": "same@example.com", "password": "12345678"})
        ).status_code
        for _ in range(6)
    ]
    assert codes[0] == 201 and codes[1:5] == [409] * 4
    assert codes[5] == 429


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(anon: AsyncTestClient[Litestar]) -> None:
    first = await register(anon)
    second = (await refresh(anon, first["refresh_token"])).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await anon.get("/api/auth/me", headers=bearer(second))).status_code == 200

    # The spent token comes back: someone has a copy. Everything from that sign-in stops working.
    reused = await anon.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert (
        await anon.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]})
    ).status_code == 401
    assert (await anon.get("/api/auth/me", headers=bearer(second))).status_code == 401
    assert (await anon.get("/api/auth/me", headers=bearer(first))).status_code == 401


async def test_refresh_from_the_cookie_at_either_prefix(anon: AsyncTestClient[Litestar]) -> None:
    await register(anon)  # sets the /api/auth refresh cookie
    response = await anon.post("/api/auth/refresh")
    assert response.status_code == 200
    assert anon.cookies.get("refresh_token", path="/api/auth") == response.json()["refresh_token"]
    # The /v1/auth routes do not see the /api/auth cookie (path-limited), so nothing to refresh.
    assert (await anon.post("/v1/auth/refresh")).status_code == 401


async def test_a_garbage_refresh_token_is_401(anon: AsyncTestClient[Litestar]) -> None:
    response = await anon.post("/api/auth/refresh", json={"refresh_token": "nope"})
    assert response.status_code == 401


async def test_logout_ends_the_sign_in_at_once(anon: AsyncTestClient[Litestar]) -> None:
    tokens = await register(anon)
    other = await login(anon, tokens["email"], "long enough")
    anon.cookies.clear()  # only the bearer token names the sign-in to end
    response = await anon.post("/api/auth/logout", headers=bearer(tokens))
    assert response.status_code == 200
    cleared = response.headers.get_list("set-cookie")
    assert any(c.startswith('access_token=""') and "Max-Age=0" in c for c in cleared), cleared
    assert any(c.startswith('refresh_token=""') and "Path=/api/auth" in c for c in cleared), cleared
    assert (await anon.get("/api/auth/me", headers=bearer(tokens))).status_code == 401
    assert (await refresh(anon, tokens["refresh_token"])).status_code == 401
    # Another sign-in of the same user is another session: it stays.
    assert (await anon.get("/api/auth/me", headers=bearer(other))).status_code == 200


async def test_logout_with_the_refresh_cookie(anon: AsyncTestClient[Litestar]) -> None:
    tokens = await register(anon)  # the cookies are in the client's jar
    assert (await anon.post("/api/auth/logout")).status_code == 200
    assert (await anon.get("/api/auth/me", headers=bearer(tokens))).status_code == 401


async def test_roles_shared_providers_are_read_only_for_users(anon: AsyncTestClient[Litestar]) -> None:
    admin = As(anon, await login(anon, ADMIN_EMAIL, ADMIN_PASSWORD))
    shared = (await admin.post("/v1/llm-providers", {"name": "Shared", "provider_type": "simulator"})).json()
    models = f"/v1/llm-providers/{shared['id']}/models"
    model = (await admin.post(models, {"model_id": "m", "is_default": True})).json()
    user = As(anon, await register(anon))
    seen = await user.get(f"/v1/llm-providers/{shared['id']}")
    assert seen.status_code == 200 and seen.json()["shared"] is True  # the console shows it read-only
    seen_model = await user.get(f"/v1/llm-models/{model['id']}")
    assert seen_model.status_code == 200 and seen_model.json()["shared"] is True
    assert (await user.patch(f"/v1/llm-providers/{shared['id']}", {"name": "mine"})).status_code == 403
    assert (await user.delete(f"/v1/llm-models/{model['id']}")).status_code == 403
    assert (await user.post(models, {"model_id": "sneaky"})).status_code == 403

    # A user's own provider is theirs alone, and cannot hold the server-wide default model.
    own = (await user.post("/v1/llm-providers", {"name": "Mine", "provider_type": "simulator"})).json()
    assert own["shared"] is False
    own_models = f"/v1/llm-providers/{own['id']}/models"
    assert (await user.post(own_models, {"model_id": "x", "is_default": True})).status_code == 403
    assert (await admin.get(f"/v1/llm-providers/{own['id']}")).status_code == 404
    listed = (await admin.get("/v1/llm-providers")).json()
    assert [p["id"] for p in listed] == [shared["id"]]

    # Agents may use the shared model; another user's private model does not exist for them.
    used = await user.post("/v1/agents", {"name": "users-secret-agent", "default_model_id": model["id"]})
    assert used.status_code == 201
    # The admin may not delete it while in use, and learns only that others use it, not who.
    in_use = await admin.delete(f"/v1/llm-models/{model['id']}")
    assert in_use.status_code == 409 and "users-secret-agent" not in in_use.text
    assert "1 agent(s) or session(s) of other users" in in_use.json()["error"]
    private = (await user.post(own_models, {"model_id": "y"})).json()
    other = As(anon, await register(anon))
    refused = await other.post("/v1/agents", {"name": "b", "default_model_id": private["id"]})
    assert refused.status_code == 400 and refused.json()["field"] == "default_model_id"


async def test_users_do_not_see_the_base_url_of_shared_providers(anon: AsyncTestClient[Litestar]) -> None:
    admin = As(anon, await login(anon, ADMIN_EMAIL, ADMIN_PASSWORD))
    inside = "http://10.20.30.40:11434/v1"  # a local model server: not for users to learn
    body = {"name": "Local", "provider_type": "openai_compatible", "base_url": inside}
    shared = (await admin.post("/v1/llm-providers", body)).json()
    assert shared["base_url"] == inside  # whoever may change it sees it
    assert (await admin.get(f"/v1/llm-providers/{shared['id']}")).json()["base_url"] == inside
    assert [p["base_url"] for p in (await admin.get("/v1/llm-providers")).json()] == [inside]

    user = As(anon, await register(anon))
    seen = await user.get(f"/v1/llm-providers/{shared['id']}")
    assert seen.status_code == 200 and seen.json()["base_url"] is None
    listed = (await user.get("/v1/llm-providers")).json()
    assert [(p["id"], p["base_url"]) for p in listed] == [(shared["id"], None)]
    assert "10.20.30.40" not in seen.text + str(listed)
    # A user's own provider shows its own base_url to them.
    public = "https://1.1.1.1/v1"  # an address literal: no DNS needed here
    mine = {"name": "Mine", "provider_type": "openai", "base_url": public}
    own = await user.post("/v1/llm-providers", mine)
    assert own.status_code == 201 and own.json()["base_url"] == public
    assert (await user.get(f"/v1/llm-providers/{own.json()['id']}")).json()["base_url"] == public


def second_api(endpoints: Endpoints) -> Litestar:
    """Another API process on the same database, served by uvicorn (streams need a real server)."""
    return app_for(full_settings(endpoints), configure_logs=False)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:11434/v1",
        "http://10.1.2.3/v1",
        "http://169.254.169.254/latest",
        "http://[::1]:8000/v1",
        "http://localhost:8000/v1",
        "ftp://example.com/",
        "http://example.com:99999/v1",
        "http://[::1/v1",
    ],
)
async def test_a_users_provider_may_not_point_into_the_servers_network(
    anon: AsyncTestClient[Litestar], base_url: str
) -> None:
    user = As(anon, await register(anon))
    body = {"name": "x", "provider_type": "openai_compatible", "base_url": base_url}
    refused = await user.post("/v1/llm-providers", body)
    assert refused.status_code == 400 and refused.json()["field"] == "base_url", refused.text
    own = (await user.post("/v1/llm-providers", {"name": "y", "provider_type": "openai_compatible"})).json()
    moved = await user.patch(f"/v1/llm-providers/{own['id']}", {"base_url": base_url})
    assert moved.status_code == 400 and moved.json()["field"] == "base_url"
    # An admin may (a local model server is a normal setup).
    admin = As(anon, await login(anon, ADMIN_EMAIL, ADMIN_PASSWORD))
    by_admin = await admin.post("/v1/llm-providers", body)
    if base_url.startswith("http") and base_url not in ("http://example.com:99999/v1", "http://[::1/v1"):
        assert by_admin.status_code == 201
    else:  # not a URL at all, whoever gives it
        assert by_admin.status_code == 400 and by_admin.json()["field"] == "base_url"


async def test_a_user_may_set_base_url_only_where_calls_can_be_pinned(
    anon: AsyncTestClient[Litestar],
) -> None:
    user = As(anon, await register(anon))
    body = {"name": "x", "provider_type": "anthropic", "base_url": "https://proxy.example.com"}
    refused = await user.post("/v1/llm-providers", body)
    assert refused.status_code == 400 and "only an admin" in refused.json()["error"]


async def test_the_event_stream_ends_when_its_credential_expires(
    endpoints: Endpoints, anon: AsyncTestClient[Litestar], db: Database
) -> None:
    user = await register(anon)
    agent = (await anon.post("/v1/agents", json={"name": "a"}, headers=bearer(user))).json()
    session = (await anon.post(f"/v1/agents/{agent['id']}/sessions", json={}, headers=bearer(user))).json()
    key = (await anon.post("/api/auth/api-keys", json={"name": "sse"}, headers=bearer(user))).json()
    path = f"/v1/agents/{agent['id']}/sessions/{session['id']}/events"
    with running(second_api(endpoints)) as server:
        # The expiry is set once the server is up, and far enough ahead that a loaded machine still
        # opens the stream in time: what is tested is that an open stream ends when it passes.
        async with db.session() as s:
            await s.execute(
                update(ApiKey)
                .where(ApiKey.id == uuid.UUID(key["id"]))
                .values(expires_at=datetime.now(UTC) + timedelta(seconds=4))
            )
            await s.commit()
        async with open_sse(server, path, headers={"Authorization": f"Bearer {key['key']}"}) as stream:
            frames = await stream.until_comment(event_stream.CREDENTIAL_EXPIRED, timeout=15)
            assert frames == []
            assert await stream.ended()


async def test_the_event_stream_ends_after_logout(
    endpoints: Endpoints, anon: AsyncTestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_stream, "KEEPALIVE_S", 0.2)
    user = await register(anon)
    agent = (await anon.post("/v1/agents", json={"name": "a"}, headers=bearer(user))).json()
    session = (await anon.post(f"/v1/agents/{agent['id']}/sessions", json={}, headers=bearer(user))).json()
    path = f"/v1/agents/{agent['id']}/sessions/{session['id']}/events"
    async with (
        running(second_api(endpoints)) as server,
        open_sse(server, path, headers=bearer(user)) as stream,
    ):
        await stream.until_comment("keep-alive")  # following, credential checked
        assert (await anon.post("/api/auth/logout", headers=bearer(user))).status_code == 200
        await asyncio.wait_for(stream.until_comment(event_stream.CREDENTIAL_REVOKED), 10)
        assert await stream.ended()


async def test_a_busy_event_stream_ends_after_its_key_is_revoked(
    endpoints: Endpoints, anon: AsyncTestClient[Litestar], db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_stream, "KEEPALIVE_S", 0.3)
    user = As(anon, await register(anon))
    agent = (await user.post("/v1/agents", {"name": "a"})).json()
    session = (await user.post(f"/v1/agents/{agent['id']}/sessions", {})).json()
    key = (await user.post("/api/auth/api-keys", {"name": "sse"})).json()
    path = f"/v1/agents/{agent['id']}/sessions/{session['id']}/events"
    redis = bus.connect(endpoints.redis_url)

    async def chatter() -> None:  # a frame far more often than the keep-alive interval
        for n in range(10_000):
            await store_and_publish(db, redis, uuid.UUID(session["id"]), "test.step", n=n)
            await asyncio.sleep(0.02)

    credential = {"Authorization": f"Bearer {key['key']}"}
    async with running(second_api(endpoints)) as server, open_sse(server, path, headers=credential) as stream:
        busy = asyncio.create_task(chatter())
        try:
            assert (await stream.event()).event == "test.step"
            assert (await user.delete(f"/api/auth/api-keys/{key['id']}")).status_code == 204
            await asyncio.wait_for(stream.until_comment(event_stream.CREDENTIAL_REVOKED), 10)
            assert await stream.ended()
        finally:
            busy.cancel()
            await redis.aclose()


async def test_an_account_that_becomes_the_admin_keeps_no_credential(
    endpoints: Endpoints, db: Database
) -> None:
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as first:
        early = await register(first, "future.boss@example.com")
        key = (await As(first, early).post("/api/auth/api-keys", {"name": "kept?"})).json()["key"]
    # The operator then names that email as the admin (the app's start-up brings the account in line).
    promoted = full_settings(endpoints, ADMIN_EMAIL="future.boss@example.com", ADMIN_PASSWORD="the real one")
    async with AsyncTestClient(app=app_for(promoted, configure_logs=False)) as api:
        assert (await api.get("/api/auth/me", headers={"Authorization": f"Bearer {key}"})).status_code == 401
        assert (await api.get("/api/auth/me", headers=bearer(early))).status_code == 401
        old = await api.post(
            "/api/auth/login", json={"email": "future.boss@example.com", "password": "long enough"}
        )
        assert old.status_code == 401
        admin = await login(api, "future.boss@example.com", "the real one")
        assert (await api.get("/api/auth/me", headers=bearer(admin))).json()["role"] == "admin"


def test_full_mode_needs_a_jwt_secret_and_a_whole_admin() -> None:
    with pytest.raises(SettingsError, match="AUTH_MODE=full needs AUTH_JWT_SECRET"):
        load_settings({"AUTH_MODE": "full"}).check_runnable()
    with pytest.raises(SettingsError, match="ADMIN_EMAIL and ADMIN_PASSWORD go together"):
        load_settings(
            {"AUTH_MODE": "full", "AUTH_JWT_SECRET": SECRET, "ADMIN_EMAIL": "a@b.co"}
        ).check_runnable()
    load_settings({"AUTH_MODE": "full", "AUTH_JWT_SECRET": SECRET}).check_runnable()
    with pytest.raises(SettingsError, match="OIDC_CLIENT_ID and OIDC_CLIENT_SECRET go together"):
        load_settings({"OIDC_CLIENT_ID": "x", "OIDC_ISSUER": "https://id.example.com"})
    with pytest.raises(SettingsError, match="OIDC_ISSUER is needed"):
        load_settings({"OIDC_CLIENT_ID": "x", "OIDC_CLIENT_SECRET": "y"})
