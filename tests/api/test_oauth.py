"""Sign-in with OAuth / OpenID Connect, end to end against a provider the test runs locally: the
authorization redirect with state, PKCE and nonce, the callback, account creation and linking, and
the refusals (another browser's state, a replayed state, a code from another flow, a wrong nonce)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from core.db import Database
from everloop.stack import Endpoints
from services import oauth
from tests.api.test_auth_full import clear_rate_limits, full_settings
from tests.apps import app_for
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, ProviderState, create_provider_app
from tests.servers import running


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[str, ProviderState]]:
    app, state = create_provider_app()
    with running(app) as server:
        yield server.url, state


@pytest.fixture
def provider_state(provider: tuple[str, ProviderState]) -> ProviderState:
    state = provider[1]
    state.verified, state.wrong_nonce, state.email_in_id_token = True, False, True
    return state


def _oauth_env(issuer: str, **extra: str) -> dict[str, str]:
    client = {"CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET}
    env = {
        f"{prefix}_{k}": v for prefix in ("OIDC", "OAUTH_GOOGLE", "OAUTH_GITHUB") for k, v in client.items()
    }
    return {
        **env,
        "OIDC_ISSUER": issuer,
        "OIDC_NAME": "Test SSO",
        "OAUTH_GOOGLE_ISSUER": issuer,  # Google's flow, pointed at the local provider
        "OAUTH_GITHUB_URL": issuer,
        "OAUTH_GITHUB_API_URL": f"{issuer}/api",
        "AUTH_REDIRECT_URL": "/app/",
        **extra,
    }


@pytest.fixture
async def browser(
    endpoints: Endpoints, db: Database, provider: tuple[str, ProviderState], provider_state: ProviderState
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await clear_rate_limits(endpoints)
    app = app_for(full_settings(endpoints, **_oauth_env(provider[0])), configure_logs=False)
    async with AsyncTestClient(app=app) as client:
        yield client


async def _authorize(browser: httpx.AsyncClient, provider_id: str, login_as: str) -> str:
    """Starts the flow and lets the provider sign `login_as` in; returns the callback path+query."""
    start = await browser.get(f"/api/auth/oauth/{provider_id}", follow_redirects=False)
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient() as outside:  # the provider is another site
        approved = await outside.get(f"{start.headers['location']}&{urlencode({'login_as': login_as})}")
    assert approved.status_code in (302, 307), approved.text
    back = urlsplit(approved.headers["location"])
    return f"{back.path}?{back.query}"


async def _sign_in(browser: httpx.AsyncClient, provider_id: str, login_as: str) -> dict[str, Any]:
    callback = await browser.get(await _authorize(browser, provider_id, login_as), follow_redirects=False)
    assert callback.status_code == 302, callback.text
    assert callback.headers["location"] == "/app/"
    me = await browser.get("/api/auth/me")  # the access_token cookie
    assert me.status_code == 200, me.text
    body: dict[str, Any] = me.json()
    return body


async def test_config_lists_the_providers(browser: AsyncTestClient[Litestar]) -> None:
    config = (await browser.get("/api/auth/config")).json()
    assert config["oauth_providers"] == ["google", "github", "oidc"]


async def test_the_authorization_request_carries_state_pkce_and_nonce(
    browser: AsyncTestClient[Litestar], provider: tuple[str, ProviderState]
) -> None:
    start = await browser.get("/api/auth/oauth/oidc", follow_redirects=False)
    location = urlsplit(start.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{provider[0]}/authorize"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == "http://testserver.local/api/auth/callback/oidc"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and query["nonce"]
    assert "openid" in query["scope"].split()
    assert browser.cookies.get("oauth_state", path="/api/auth/callback") == query["state"]


@pytest.mark.parametrize("provider_id", ["oidc", "google", "github"])
async def test_first_sign_in_creates_the_user_and_the_next_finds_them(
    browser: AsyncTestClient[Litestar], provider_state: ProviderState, provider_id: str
) -> None:
    email = f"{provider_id}-person@example.com"
    first = await _sign_in(browser, provider_id, email)
    assert (first["email"], first["role"], first["authenticated_by"]) == (email, "user", "cookie")
    browser.cookies.clear()
    again = await _sign_in(browser, provider_id, email)
    assert again["id"] == first["id"]
    assert browser.cookies.get("refresh_token", path="/api/auth")  # a full sign-in: refresh works too
    assert (await browser.post("/api/auth/refresh")).status_code == 200


async def test_the_email_comes_from_userinfo_when_the_id_token_has_none(
    browser: AsyncTestClient[Litestar], provider_state: ProviderState
) -> None:
    provider_state.email_in_id_token = False
    calls = provider_state.userinfo_calls
    me = await _sign_in(browser, "oidc", "quiet@example.com")
    assert me["email"] == "quiet@example.com"
    assert provider_state.userinfo_calls == calls + 1


async def test_a_verified_email_links_to_the_existing_account(browser: AsyncTestClient[Litestar]) -> None:
    registered = await browser.post(
        "/api/auth/register", json={"email": "both@example.com", "password": "a password"}
    )
    assert registered.status_code == 201
    me_before = (await browser.get("/api/auth/me")).json()
    browser.cookies.clear()
    me = await _sign_in(browser, "oidc", "both@example.com")
    assert me["id"] == me_before["id"]
    # The password was never proven to be the email owner's: it no longer signs in (pre-hijack defence).
    login = await browser.post(
        "/api/auth/login", json={"email": "both@example.com", "password": "a password"}
    )
    assert login.status_code == 401


async def test_an_unverified_email_is_refused(
    browser: AsyncTestClient[Litestar], provider_state: ProviderState
) -> None:
    provider_state.verified = False
    callback = await browser.get(await _authorize(browser, "oidc", "unsure@example.com"))
    assert callback.status_code == 400
    assert "did not confirm an email" in callback.json()["error"]


async def test_a_callback_in_another_browser_is_refused(
    browser: AsyncTestClient[Litestar], endpoints: Endpoints, provider: tuple[str, ProviderState]
) -> None:
    callback = await _authorize(browser, "oidc", "victim@example.com")
    # The attacker's browser never started this sign-in, so it has no matching state cookie.
    app = app_for(full_settings(endpoints, **_oauth_env(provider[0])), configure_logs=False)
    async with AsyncTestClient(app=app) as other:
        refused = await other.get(callback, follow_redirects=False)
    assert refused.status_code == 401 and "state" in refused.json()["error"]


async def test_a_state_works_once(browser: AsyncTestClient[Litestar]) -> None:
    callback = await _authorize(browser, "oidc", "once@example.com")
    state_cookie = browser.cookies.get("oauth_state", path="/api/auth/callback")
    assert (await browser.get(callback, follow_redirects=False)).status_code == 302
    assert state_cookie is not None
    browser.cookies.set("oauth_state", state_cookie, path="/api/auth/callback")
    replayed = await browser.get(callback, follow_redirects=False)
    assert replayed.status_code == 401 and "already used" in replayed.json()["error"]


async def test_a_code_from_another_flow_fails_pkce(browser: AsyncTestClient[Litestar]) -> None:
    stolen = parse_qs(urlsplit(await _authorize(browser, "oidc", "victim@example.com")).query)["code"][0]
    own = urlsplit(await _authorize(browser, "oidc", "attacker@example.com"))
    own_state = parse_qs(own.query)["state"][0]
    # The attacker's own state with the victim's code: the verifier of this flow does not match.
    swapped = await browser.get(f"{own.path}?{urlencode({'code': stolen, 'state': own_state})}")
    assert swapped.status_code == 401
    assert "refused the code" in swapped.json()["error"]


async def test_a_wrong_nonce_is_refused(
    browser: AsyncTestClient[Litestar], provider_state: ProviderState
) -> None:
    provider_state.wrong_nonce = True
    callback = await browser.get(await _authorize(browser, "oidc", "nonce@example.com"))
    assert callback.status_code == 401 and "nonce" in callback.json()["error"]


async def test_an_unknown_provider_is_404_and_other_modes_have_none(
    browser: AsyncTestClient[Litestar], endpoints: Endpoints
) -> None:
    assert (await browser.get("/api/auth/oauth/facebook", follow_redirects=False)).status_code == 404
    async with AsyncTestClient(app=app_for(full_settings(endpoints), configure_logs=False)) as plain:
        assert (await plain.get("/api/auth/oauth/oidc", follow_redirects=False)).status_code == 404


async def test_closed_registration_lets_only_existing_accounts_in(
    endpoints: Endpoints, db: Database, provider: tuple[str, ProviderState], provider_state: ProviderState
) -> None:
    env = _oauth_env(provider[0], AUTH_REGISTRATION_OPEN="false")
    async with AsyncTestClient(app=app_for(full_settings(endpoints, **env), configure_logs=False)) as closed:
        refused = await closed.get(await _authorize(closed, "github", "newcomer@example.com"))
        assert refused.status_code == 403


@pytest.mark.parametrize("provider_id", ["oidc", "github"])
async def test_the_sign_in_fills_the_avatar_and_name_from_the_provider(
    browser: AsyncTestClient[Litestar], provider_id: str
) -> None:
    me = await _sign_in(browser, provider_id, f"face-{provider_id}@example.com")
    assert me["avatar_url"].startswith("https://avatars.example.com/")  # OIDC `picture`, GitHub `avatar_url`
    assert me["name"] == f"face-{provider_id}" and me["roles"] == ["user"]


async def test_a_linked_account_keeps_its_own_name_and_gains_an_avatar(
    browser: AsyncTestClient[Litestar],
) -> None:
    registered = await browser.post(
        "/v1/auth/register", json={"email": "named@example.com", "password": "a password", "name": "Own Name"}
    )
    assert registered.status_code == 201
    browser.cookies.clear()
    me = await _sign_in(browser, "oidc", "named@example.com")
    assert me["name"] == "Own Name"  # what the account had is never overwritten
    assert me["avatar_url"] and me["avatar_url"].startswith("https://avatars.example.com/")


def test_only_a_web_address_is_taken_as_the_avatar() -> None:
    _picture = oauth._picture
    assert _picture("https://cdn.example.com/a.png") == "https://cdn.example.com/a.png"
    for refused in ("javascript:alert(1)", "data:image/png;base64,AAAA", "/relative.png", 7, None):
        assert _picture(refused) is None
    assert _picture("https://example.com/" + "a" * 2000) is None


async def test_behind_a_path_prefix_the_state_cookie_follows_the_redirect_uri(
    endpoints: Endpoints, db: Database, provider: tuple[str, ProviderState], provider_state: ProviderState
) -> None:
    # A frontend serves the API under /api (Everruns' UI: /api/v1/auth/oauth/...); the operator says so.
    env = _oauth_env(provider[0], EVERLOOP_PUBLIC_URL="http://testserver.local/api")
    async with AsyncTestClient(app=app_for(full_settings(endpoints, **env), configure_logs=False)) as ui:
        start = await ui.get("/v1/auth/oauth/oidc", follow_redirects=False)
        query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["location"]).query).items()}
        assert query["redirect_uri"] == "http://testserver.local/api/v1/auth/callback/oidc"
        assert ui.cookies.get("oauth_state", path="/api/v1/auth/callback") == query["state"]
        async with httpx.AsyncClient() as outside:
            approved = await outside.get(f"{start.headers['location']}&login_as=proxied%40example.com")
        back = urlsplit(approved.headers["location"])
        assert back.path == "/api/v1/auth/callback/oidc"
        # The proxy hands the callback on without its /api, with the cookies the browser sent there.
        sent = {"Cookie": f"oauth_state={query['state']}"}
        ui.cookies.clear()
        callback = await ui.get(
            f"{back.path.removeprefix('/api')}?{back.query}", headers=sent, follow_redirects=False
        )
        assert callback.status_code == 302, callback.text
        set_cookies = callback.headers.get_list("set-cookie")
        assert any(c.startswith("refresh_token=") and "Path=/api/v1/auth;" in f"{c};" for c in set_cookies)
        assert any(c.startswith('oauth_state=""') and "Path=/api/v1/auth/callback" in c for c in set_cookies)
