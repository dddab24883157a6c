"""Auth as Everruns' web UI and SDK use it (issue 12), against the real stack in AUTH_MODE=full (and
admin for API keys): the config's `password_auth_enabled`/`signup_enabled`, `me` with `name`, `roles`
and `avatar_url`, register with a `name`, API keys with `key_prefix` and `scopes`, the member list
`/v1/users`, the refresh cookie reaching the refresh route through a frontend's `/api` proxy, and an
API key sent with no `Bearer` word, as the SDK sends it."""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar

import httpx
import pytest
from everruns_sdk import Everruns
from everruns_sdk.errors import AuthenticationError
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from core.db import Database
from core.db.models import ApiKey, User
from everloop.stack import Endpoints
from services import auth
from tests.api import test_auth
from tests.api.test_auth_full import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    As,
    bearer,
    clear_rate_limits,
    full_settings,
    login,
    register,
)
from tests.apps import app_for
from tests.conftest import make_settings
from tests.servers import running

BASE = "http://testserver.local"  # where Litestar's test client says it is


@pytest.fixture
async def anon(endpoints: Endpoints, db: Database) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as client:
        yield client


async def _key(user: As, **body: object) -> dict[str, object]:
    response = await user.post("/v1/auth/api-keys", {"name": "sdk", **body})
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def _carried(jar: CookieJar, method: str, url: str) -> str:
    """The Cookie header a browser-like jar (the standard library's, RFC 6265 path matching) would
    send with a request to `url`."""
    request = urllib.request.Request(url, method=method)
    jar.add_cookie_header(request)
    return request.get_header("Cookie") or ""


# GET /v1/auth/config


async def test_config_has_password_auth_and_signup(endpoints: Endpoints, db: Database) -> None:
    for env, signup in (({}, True), ({"AUTH_REGISTRATION_OPEN": "false"}, False)):
        app = app_for(full_settings(endpoints, **env), configure_logs=False)
        async with AsyncTestClient(app=app) as client:
            config = (await client.get("/v1/auth/config")).json()
            assert config == {
                "mode": "full",
                "registration_open": signup,
                "oauth_providers": [],
                "password_auth_enabled": True,
                "signup_enabled": signup,
            }
            # Honest: when the config says no sign-up, register is refused.
            refused = await client.post(
                "/v1/auth/register", json={"email": "c@example.com", "password": "long enough"}
            )
            assert refused.status_code == (201 if signup else 403)


async def test_config_in_the_other_modes(endpoints: Endpoints, db: Database) -> None:
    async with AsyncTestClient(app=app_for(test_auth._settings(endpoints), configure_logs=False)) as admin:
        config = (await admin.get("/v1/auth/config")).json()
        assert (config["password_auth_enabled"], config["signup_enabled"]) == (True, False)
    none = app_for(make_settings(endpoints), configure_logs=False)
    async with AsyncTestClient(app=none) as client:
        config = (await client.get("/v1/auth/config")).json()
        assert config["mode"] == "none"
        assert (config["password_auth_enabled"], config["signup_enabled"]) == (False, False)


# register with a name, GET /v1/auth/me


async def test_register_with_a_name_and_me_shows_it(anon: AsyncTestClient[Litestar]) -> None:
    response = await anon.post(
        "/v1/auth/register",
        json={"email": "ada@example.com", "password": "long enough", "name": "  Ada Lovelace "},
    )
    assert response.status_code == 201, response.text
    me = (await anon.get("/v1/auth/me", headers=bearer(response.json()))).json()
    assert me["name"] == "Ada Lovelace"
    assert (me["email"], me["role"], me["roles"], me["avatar_url"]) == (
        "ada@example.com",
        "user",
        ["user"],
        None,
    )
    assert me["authenticated_by"] == "token" and me["auth_mode"] == "full"


async def test_without_a_name_me_names_the_user_after_the_email(anon: AsyncTestClient[Litestar]) -> None:
    tokens = await register(anon, "grace.hopper@example.com")  # the seed's body: no name
    assert (await anon.get("/v1/auth/me", headers=bearer(tokens))).json()["name"] == "grace.hopper"
    blank = await anon.post(
        "/v1/auth/register", json={"email": "blank@example.com", "password": "long enough", "name": "  "}
    )
    assert (await anon.get("/v1/auth/me", headers=bearer(blank.json()))).json()["name"] == "blank"


async def test_a_name_is_length_limited_and_typed(anon: AsyncTestClient[Litestar]) -> None:
    body = {"email": "long@example.com", "password": "long enough"}
    too_long = await anon.post("/v1/auth/register", json={**body, "name": "x" * 201})
    assert too_long.status_code == 400 and too_long.json()["field"] == "name"
    not_text = await anon.post("/v1/auth/register", json={**body, "name": 7})
    assert not_text.status_code == 400 and not_text.json()["field"] == "name"
    assert (await anon.post("/v1/auth/login", json=body)).status_code == 401  # nothing was made


async def test_me_of_the_admin_and_the_avatar(anon: AsyncTestClient[Litestar], db: Database) -> None:
    admin = await login(anon, ADMIN_EMAIL, ADMIN_PASSWORD)
    async with db.session() as s:
        user = (await s.execute(select(User).where(User.email == ADMIN_EMAIL))).scalar_one()
        user.avatar_url = "https://example.com/root.png"
        await s.commit()
    me = (await anon.get("/v1/auth/me", headers=bearer(admin))).json()
    assert (me["roles"], me["name"], me["avatar_url"]) == (["admin"], "root", "https://example.com/root.png")


# API keys: key_prefix and scopes


async def test_api_keys_show_key_prefix_and_scopes(anon: AsyncTestClient[Litestar]) -> None:
    user = As(anon, await register(anon))
    created = await _key(user)
    key = str(created["key"])
    assert created["prefix"] == key[:12] and created["key_prefix"] == f"{key[:12]}..."
    assert created["scopes"] == ["*"]  # Everruns' default
    explicit = await _key(user, scopes=["*"], expires_in_days=30)
    assert explicit["scopes"] == ["*"] and explicit["expires_at"]
    for prefix in ("/v1/auth", "/api/auth"):  # the UI's route and the seed's
        listed = (await user.get(f"{prefix}/api-keys")).json()
        assert isinstance(listed, list) and [k["id"] for k in listed] == [explicit["id"], created["id"]]
        assert listed[1]["key_prefix"] == created["key_prefix"] and listed[1]["scopes"] == ["*"]
        assert key not in str(listed) and all("key" not in k for k in listed)  # still write-only


async def test_a_scope_the_server_cannot_enforce_is_refused(anon: AsyncTestClient[Litestar]) -> None:
    user = As(anon, await register(anon))
    for scopes in (["read"], ["*", "sessions:write"]):
        refused = await user.post("/v1/auth/api-keys", {"name": "narrow", "scopes": scopes})
        assert refused.status_code == 400 and refused.json()["field"] == "scopes", refused.text
        assert "only scope" in refused.json()["error"]
    assert (await user.post("/v1/auth/api-keys", {"name": "x", "scopes": "*"})).status_code == 400
    assert (await user.get("/v1/auth/api-keys")).json() == []  # none was made
    assert (await _key(user, scopes=[]))["scopes"] == ["*"]  # empty: the default, as in Everruns


async def test_a_key_made_before_scopes_lists_as_full_access(
    anon: AsyncTestClient[Litestar], db: Database
) -> None:
    user = As(anon, await register(anon))
    created = await _key(user)
    async with db.session() as s:
        row = await s.get(ApiKey, created["id"])
        assert row is not None and row.scopes == ["*"]
        row.scopes = []  # as migration 0010 left the keys that existed
        await s.commit()
    assert (await user.get("/v1/auth/api-keys")).json()[0]["scopes"] == ["*"]


# Authorization: <key>, without the Bearer word


async def test_a_bare_api_key_authenticates(anon: AsyncTestClient[Litestar]) -> None:
    tokens = await register(anon)
    key = str((await _key(As(anon, tokens)))["key"])
    anon.cookies.clear()  # only the header speaks
    for header in (key, f"  {key} ", f"ApiKey {key}", f"Bearer {key}"):
        me = await anon.get("/v1/auth/me", headers={"Authorization": header})
        assert me.status_code == 200, (header, me.text)
        assert (me.json()["email"], me.json()["authenticated_by"]) == (tokens["email"], "api_key")
    made = await anon.post("/v1/agents", json={"name": "bare"}, headers={"Authorization": key})
    assert made.status_code == 201, made.text  # changes too: a header is not sent by browsers on their own


async def test_anything_else_without_bearer_is_401(anon: AsyncTestClient[Litestar]) -> None:
    tokens = await register(anon)
    user = As(anon, tokens)
    key = str((await _key(user))["key"])
    anon.cookies.clear()
    refused = [
        "garbage",
        tokens["access_token"],  # a token is not a key: only `Bearer <token>` carries one
        key[:-1],  # one digit short
        key.upper().replace("EVR_", "evr_"),  # not our lower-case hex
        f"{key}0",
        f"evr_{'0' * 64}",  # the right shape, but no such key
        f"ApiKey {tokens['access_token']}",
        f"Basic {key}",
    ]
    for header in refused:
        response = await anon.get("/v1/auth/me", headers={"Authorization": header})
        assert response.status_code == 401, (header, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
    # A revoked key is 401 bare as with Bearer.
    created = await _key(user)
    assert (await user.delete(f"/v1/auth/api-keys/{created['id']}")).status_code == 204
    gone = await anon.get("/v1/auth/me", headers={"Authorization": str(created["key"])})
    assert gone.status_code == 401


async def test_a_bare_api_key_in_admin_mode(endpoints: Endpoints, db: Database) -> None:
    async with AsyncTestClient(app=app_for(test_auth._settings(endpoints), configure_logs=False)) as client:
        tokens = await login(client, test_auth.EMAIL, test_auth.PASSWORD)
        key = (await client.post("/v1/auth/api-keys", json={"name": "ci"}, headers=bearer(tokens))).json()
        client.cookies.clear()
        me = await client.get("/v1/auth/me", headers={"Authorization": key["key"]})
        assert me.status_code == 200 and me.json()["authenticated_by"] == "api_key"
        assert (await client.get("/v1/agents", headers={"Authorization": "nonsense"})).status_code == 401


async def test_the_sdk_works_with_its_bare_key_header(endpoints: Endpoints, db: Database) -> None:
    app = app_for(full_settings(endpoints), configure_logs=False)
    async with running(app) as server, httpx.AsyncClient(base_url=server.url) as http:
        tokens = await register(http)
        key = str((await _key(As(http, tokens)))["key"])
        async with Everruns(api_key=key, base_url=server.url) as sdk:
            assert sdk._auth_headers()["Authorization"] == key  # no Bearer: what this test is about
            capabilities = await sdk.capabilities.list()
        assert capabilities and all(c.id for c in capabilities)
        async with Everruns(api_key=f"evr_{'0' * 64}", base_url=server.url) as stranger:
            with pytest.raises(AuthenticationError):  # a 401: a key-shaped string is not yet a key
                await stranger.capabilities.list()


# GET /v1/users


async def test_the_member_list_for_an_admin(anon: AsyncTestClient[Litestar]) -> None:
    named = await anon.post(
        "/v1/auth/register", json={"email": "m1@example.com", "password": "long enough", "name": "Member One"}
    )
    assert named.status_code == 201
    await register(anon, "m2@example.com")
    admin = As(anon, await login(anon, ADMIN_EMAIL, ADMIN_PASSWORD))
    response = await admin.get("/v1/users")
    assert response.status_code == 200, response.text
    body = response.json()
    by_email = {u["email"]: u for u in body["data"]}
    assert {ADMIN_EMAIL, "m1@example.com", "m2@example.com"} <= set(by_email)
    assert body["total"] == len(body["data"])
    one = by_email["m1@example.com"]
    assert set(one) == {"id", "email", "name", "avatar_url", "roles", "auth_provider", "created_at"}
    assert (one["name"], one["roles"], one["auth_provider"], one["avatar_url"]) == (
        "Member One",
        ["user"],
        "password",
        None,
    )
    assert by_email[ADMIN_EMAIL]["roles"] == ["admin"] and by_email["m2@example.com"]["name"] == "m2"
    # No secret of anyone's travels with it.
    assert "password_hash" not in response.text and "$argon2" not in response.text
    searched = (await admin.get("/v1/users?search=member%20one")).json()
    assert [u["email"] for u in searched["data"]] == ["m1@example.com"] and searched["total"] == 1
    assert (await admin.get("/v1/users?search=%25")).json()["data"] == []  # % is literal, not a wildcard
    assert len((await admin.get("/v1/users?limit=1")).json()["data"]) == 1


async def test_the_member_list_is_403_for_a_user(anon: AsyncTestClient[Litestar]) -> None:
    user = As(anon, await register(anon))
    response = await user.get("/v1/users")
    assert response.status_code == 403
    assert "@" not in response.text  # no one's email, not even the caller's
    key = str((await _key(user))["key"])
    assert (await anon.get("/v1/users", headers={"Authorization": key})).status_code == 403
    anon.cookies.clear()
    assert (await anon.get("/v1/users")).status_code == 401


# The refresh cookie through a frontend's proxy under /api


async def test_the_refresh_cookie_reaches_the_ui_proxys_refresh_route(
    anon: AsyncTestClient[Litestar],
) -> None:
    response = await anon.post(
        "/v1/auth/register", json={"email": "ui@example.com", "password": "long enough", "name": "UI"}
    )
    assert response.status_code == 201
    refresh_cookies = [c for c in response.headers.get_list("set-cookie") if c.startswith("refresh_token=")]
    paths = sorted(part.strip() for c in refresh_cookies for part in c.split(";") if "Path=" in part)
    assert paths == ["Path=/api/v1/auth", "Path=/v1/auth"], refresh_cookies
    assert all("httponly" in c.lower() and "samesite=strict" in c.lower() for c in refresh_cookies)

    # What a browser at the UI's origin would send, by RFC 6265's path matching.
    jar = anon.cookies.jar
    token = response.json()["refresh_token"]
    assert f"refresh_token={token}" in _carried(jar, "POST", f"{BASE}/api/v1/auth/refresh")
    assert f"refresh_token={token}" in _carried(jar, "POST", f"{BASE}/v1/auth/refresh")
    for elsewhere in ("/api/v1/agents", "/v1/agents", "/api/v1/authx", "/", "/api/auth/refresh"):
        assert "refresh_token" not in _carried(jar, "GET", f"{BASE}{elsewhere}"), elsewhere

    # The UI's refresh: no body, the cookie only, handed on by the proxy without its /api.
    carried = _carried(jar, "POST", f"{BASE}/api/v1/auth/refresh")
    anon.cookies.clear()  # (the jar above: the request carries only what the browser would send)
    proxied = await anon.post("/v1/auth/refresh", headers={"Cookie": carried})
    assert proxied.status_code == 200, proxied.text
    rotated = proxied.json()["refresh_token"]
    assert rotated != token
    again = [c for c in proxied.headers.get_list("set-cookie") if c.startswith(f"refresh_token={rotated}")]
    assert len(again) == 2  # both copies rotate, so neither is left holding a spent token
    anon.cookies.clear()
    spent = await anon.post("/v1/auth/refresh", headers={"Cookie": f"refresh_token={token}"})
    assert spent.status_code == 401  # the old copy was spent with the other

    # Logout clears both copies.
    anon.cookies.clear()
    out = await anon.post("/v1/auth/logout", headers={"Cookie": f"refresh_token={rotated}"})
    cleared = [c for c in out.headers.get_list("set-cookie") if c.startswith('refresh_token=""')]
    assert sorted(p.strip() for c in cleared for p in c.split(";") if "Path=" in p) == [
        "Path=/api/v1/auth",
        "Path=/v1/auth",
    ]
    assert all("Max-Age=0" in c for c in cleared)


async def test_the_seeds_prefix_keeps_its_one_cookie(anon: AsyncTestClient[Litestar]) -> None:
    response = await anon.post(
        "/api/auth/register", json={"email": "s@example.com", "password": "long enough"}
    )
    paths = [c for c in response.headers.get_list("set-cookie") if c.startswith("refresh_token=")]
    assert len(paths) == 1 and "Path=/api/auth;" in f"{paths[0]};"


async def test_a_public_url_with_a_path_moves_the_proxied_cookie(endpoints: Endpoints, db: Database) -> None:
    await clear_rate_limits(endpoints)
    settings = full_settings(endpoints, EVERLOOP_PUBLIC_URL="http://testserver.local/everloop/")
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as client:
        response = await client.post(
            "/v1/auth/register", json={"email": "p@example.com", "password": "long enough"}
        )
        assert response.status_code == 201
        token = response.json()["refresh_token"]
        jar = client.cookies.jar
        assert f"refresh_token={token}" in _carried(jar, "POST", f"{BASE}/everloop/v1/auth/refresh")
        assert f"refresh_token={token}" in _carried(jar, "POST", f"{BASE}/v1/auth/refresh")
        assert "refresh_token" not in _carried(jar, "POST", f"{BASE}/api/v1/auth/refresh")
        assert "refresh_token" not in _carried(jar, "GET", f"{BASE}/everloop/v1/agents")


async def test_a_public_url_path_cannot_add_cookie_attributes(endpoints: Endpoints, db: Database) -> None:
    await clear_rate_limits(endpoints)
    settings = full_settings(endpoints, EVERLOOP_PUBLIC_URL="http://testserver.local/x;Domain=example.com")
    async with AsyncTestClient(app=app_for(settings, configure_logs=False)) as client:
        response = await client.post(
            "/v1/auth/register", json={"email": "q@example.com", "password": "long enough"}
        )
        assert response.status_code == 201
        set_cookies = response.headers.get_list("set-cookie")
        assert not any("domain=" in c.lower() for c in set_cookies), set_cookies
        refresh = [c for c in set_cookies if c.startswith("refresh_token=")]
        assert sorted(p.strip() for c in refresh for p in c.split(";") if "Path=" in p) == [
            "Path=/api/v1/auth",  # the path was not used: as if EVERLOOP_PUBLIC_URL had none
            "Path=/v1/auth",
        ]


async def test_api_key_creation_is_unchanged_for_the_seed_body(anon: AsyncTestClient[Litestar]) -> None:
    user = As(anon, await register(anon))
    created = await user.post("/api/auth/api-keys", {"name": "seed", "expires_in_days": 1})
    assert created.status_code == 201 and created.json()["key"].startswith(auth.API_KEY_PREFIX)
    assert auth.looks_like_api_key(created.json()["key"])
