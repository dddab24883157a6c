"""`/api/auth/...`, also served at `/v1/auth/...`: registration, login, refresh, logout, OAuth, the
current user, API keys; and `/v1/users`, the member list for admins.

Cookies: `access_token` (HttpOnly, SameSite=Lax, path `/`) authenticates browser requests;
`refresh_token` (HttpOnly, SameSite=Strict) is sent only to the auth routes of the prefix that set it,
directly or through a frontend's proxy (see `_refresh_paths`).
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import msgspec
from litestar import Controller, Request, Response, Router, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import Body, FromPath, QueryParameter
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, OptionalBody, error_responses
from api.pagination import Page, PageParams, page
from api.security import ACCESS_COOKIE, credential_of
from api.state import Services
from core.db.models import ApiKey, User
from core.errors import Forbidden, InvalidInput, NotFound
from core.identity import Identity
from core.schemas.auth import (
    ApiKeyInfo,
    AuthConfig,
    CreateApiKey,
    LoggedOut,
    Login,
    Me,
    NewApiKey,
    RefreshRequest,
    Register,
    TokenPair,
    UserInfo,
)
from core.settings import AuthMode
from services import auth, oauth

REFRESH_COOKIE = "refresh_token"
STATE_COOKIE = "oauth_state"


class Limit(msgspec.Struct, frozen=True):
    per_email: int
    per_ip: int
    window_s: int


# Login: per email (guessing one account), per IP (a wider sweep; an office behind one address
# still fits). Registration: slower, since each attempt makes an account.
LOGIN_LIMIT = Limit(per_email=10, per_ip=30, window_s=60)
REGISTER_LIMIT = Limit(per_email=5, per_ip=20, window_s=3600)


def _op(name: str) -> Any:
    """Operation ids for a route served under both prefixes."""

    def make(handler: Any, method: Any, components: list[Any]) -> str:
        return name if str(components[0]) == "api" else f"{name}V1"

    return make


def _key_info(row: ApiKey) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "key_prefix": f"{row.prefix}...",
        "scopes": auth.scopes_of(row),
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "expires_at": row.expires_at,
    }


FromProvider = Annotated[str | None, QueryParameter(description="Set by the provider's redirect")]


StateParam = Annotated[str | None, QueryParameter(name="state", description="Set by the provider's redirect")]


def _client_ip(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


async def _rate_limit(services: Services, action: str, limit: Limit, *, email: str, ip: str) -> None:
    """A fixed window per email and per IP in Redis: 429 with `Retry-After` past the limit. Without
    Redis nothing is limited (availability over limiting)."""
    for kind, value, allowed in (("email", email, limit.per_email), ("ip", ip, limit.per_ip)):
        name = f"everloop:ratelimit:{action}:{kind}:{value}"
        try:
            count = await services.redis.incr(name)
            if count == 1:
                await services.redis.expire(name, limit.window_s)
            ttl = await services.redis.ttl(name)
        except Exception:  # noqa: S112 - Redis away: let the request through
            continue
        if count > allowed:
            raise HTTPException(
                status_code=429,
                detail=f"too many {action} attempts; try again later",
                headers={"Retry-After": str(max(ttl, 1))},
            )


def _prefix(request: Request[Any, Any, Any]) -> str:
    return "/v1/auth" if request.url.path.startswith("/v1/auth") else "/api/auth"


# Everruns' web UI reaches the API through its own proxy under /api: the browser calls
# /api/v1/auth/refresh, which the proxy hands on to /v1/auth/refresh here.
UI_PROXY_PREFIX = "/api"


_COOKIE_PATH = re.compile(r"^(/[A-Za-z0-9._~%-]+)*$")


def _public_prefix(request: Request[Any, Any, Any]) -> str:
    """The path EVERLOOP_PUBLIC_URL puts before this server's routes ("" when none). It becomes part
    of a cookie's `Path`, so one with characters a Set-Cookie header would read otherwise (`;`) is
    not used."""
    public = request.app.state.services.settings.public_url or ""
    path = urlsplit(public).path.rstrip("/")
    return path if _COOKIE_PATH.fullmatch(path) else ""


def _refresh_paths(request: Request[Any, Any, Any]) -> list[str]:
    """Where the browser must send the refresh cookie: the auth routes of the prefix that set it, as
    this server sees them and as the browser sees them through a frontend's proxy. A cookie goes to
    the paths under its `Path`, so no one path covers both `/v1/auth` and `/api/v1/auth` but `/`,
    which would hand the 30-day token to every request: instead the same cookie is set once for
    each, and each copy still reaches only auth routes. The proxy's prefix is EVERLOOP_PUBLIC_URL's
    path when it has one (the operator said where browsers reach the API), else Everruns' UI's
    `/api` for the `/v1/auth` routes it uses. A copy is rotated and cleared with the others."""
    route = _prefix(request)
    proxied = _public_prefix(request) or (UI_PROXY_PREFIX if route == "/v1/auth" else "")
    return [route, proxied + route] if proxied else [route]


def _secure(request: Request[Any, Any, Any]) -> bool:
    """Cookies are `Secure` when the browser reaches us over https, also behind a TLS proxy."""
    public = request.app.state.services.settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def session_cookies(request: Request[Any, Any, Any], tokens: auth.Tokens) -> list[Cookie]:
    secure = _secure(request)
    return [
        Cookie(
            key=ACCESS_COOKIE,
            value=tokens.access_token,
            max_age=tokens.expires_in,
            httponly=True,
            samesite="lax",
            secure=secure,
            path="/",
        ),
        *(
            Cookie(
                key=REFRESH_COOKIE,
                value=tokens.refresh_token,
                max_age=int(auth.REFRESH_TTL.total_seconds()),
                httponly=True,
                samesite="strict",
                secure=secure,
                path=path,
            )
            for path in _refresh_paths(request)
        ),
    ]


def _cleared_cookies(request: Request[Any, Any, Any]) -> list[Cookie]:
    return [
        Cookie(key=ACCESS_COOKIE, value="", max_age=0, path="/", httponly=True, samesite="lax"),
        *(
            Cookie(key=REFRESH_COOKIE, value="", max_age=0, path=path, httponly=True, samesite="strict")
            for path in _refresh_paths(request)
        ),
    ]


def _callback_path(request: Request[Any, Any, Any]) -> str:
    """The path of the OAuth callback as the browser reaches it: that of the redirect URI, which is
    built from EVERLOOP_PUBLIC_URL when set (the `oauth_state` cookie must reach it)."""
    return f"{_public_prefix(request)}{_prefix(request)}/callback"


def _pair(tokens: auth.Tokens) -> TokenPair:
    return TokenPair(
        access_token=tokens.access_token,
        token_type="bearer",  # noqa: S106 - not a secret
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
    )


def _oauth_provider(services: Services, provider_id: str) -> oauth.Provider:
    if services.settings.auth_mode is not AuthMode.FULL:
        raise NotFound("OAuth sign-in needs AUTH_MODE=full")
    return oauth.provider(services.settings, provider_id)


def _http() -> httpx.AsyncClient:
    # Provider endpoints come from the operator's settings, so they are not address-filtered.
    return httpx.AsyncClient(timeout=oauth.HTTP_TIMEOUT_S, follow_redirects=False)


def _secret(services: Services) -> str:
    if services.settings.auth_mode is AuthMode.NONE:
        raise InvalidInput("AUTH_MODE=none needs no credentials")
    assert services.settings.auth_jwt_secret is not None
    return services.settings.auth_jwt_secret


class AuthController(Controller):
    tags = ["auth"]

    @get("/config", operation_id=_op("getAuthConfig"), responses=error_responses())
    async def config(self, services: NamedDependency[Services]) -> AuthConfig:
        """How this server authenticates: the mode, whether password sign-in and sign-up are on
        (`signup_enabled`; `registration_open` is the same, the seed's name), OAuth providers."""
        settings = services.settings
        full = settings.auth_mode is AuthMode.FULL
        signup = full and settings.auth_registration_open
        return AuthConfig(
            mode=settings.auth_mode.value,
            registration_open=signup,
            oauth_providers=list(oauth.providers(settings)) if full else [],
            # Login takes a password in admin and full mode; with none there is nothing to sign in to.
            password_auth_enabled=settings.auth_mode is not AuthMode.NONE,
            signup_enabled=signup,
        )

    @post(
        "/register",
        operation_id=_op("register"),
        status_code=201,
        responses=error_responses(400, 403, 409, 429),
    )
    async def register(
        self,
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[Register, Body()],
    ) -> Response[TokenPair]:
        """Open an account (`AUTH_MODE=full` with registration open): email, a password of at least 8
        characters and optionally a display `name`. Signs the new user in: the same answer and
        cookies as login. 409 if the email has an account."""
        settings = services.settings
        if settings.auth_mode is not AuthMode.FULL or not settings.auth_registration_open:
            raise Forbidden("registration is closed on this server")
        await _rate_limit(
            services, "register", REGISTER_LIMIT, email=data.email.lower(), ip=_client_ip(request)
        )
        user = await auth.register(db_session, data.email, data.password, data.name)
        tokens = await auth.sign_in(db_session, user, "password", _secret(services))
        return Response(_pair(tokens), status_code=201, cookies=session_cookies(request, tokens))

    @post("/login", operation_id=_op("login"), status_code=200, responses=error_responses(400, 401, 429))
    async def login(
        self,
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[Login, Body()],
    ) -> Response[TokenPair]:
        """Email and password for an access token (15 min) and a refresh token (30 days), also set as
        the `access_token` and `refresh_token` cookies."""
        secret = _secret(services)
        await _rate_limit(services, "login", LOGIN_LIMIT, email=data.email.lower(), ip=_client_ip(request))
        await services.ensure_accounts()  # ADMIN_EMAIL's account, if the start-up could not make it
        user = await auth.login(db_session, data.email.strip(), data.password)
        if user is None:
            raise HTTPException(status_code=401, detail="wrong email or password")
        tokens = await auth.sign_in(db_session, user, "password", secret)
        return Response(_pair(tokens), cookies=session_cookies(request, tokens))

    @post(
        "/refresh",
        operation_id=_op("refreshToken"),
        status_code=200,
        responses=error_responses(400, 401),
        operation_class=OptionalBody,
    )
    async def refresh(
        self,
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[RefreshRequest | None, Body()] = None,
    ) -> Response[TokenPair]:
        """A new token pair for a refresh token (from the body, else the `refresh_token` cookie). The
        presented token is spent: presenting it again revokes the whole sign-in (stolen-token defence)."""
        secret = _secret(services)
        token = (data.refresh_token if data else None) or request.cookies.get(REFRESH_COOKIE, "")
        tokens = await auth.refresh(db_session, token, secret) if token else None
        if tokens is None:
            raise HTTPException(
                status_code=401,
                detail="the refresh token is invalid, expired or revoked; sign in again",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(_pair(tokens), cookies=session_cookies(request, tokens))

    @post(
        "/logout",
        operation_id=_op("logout"),
        status_code=200,
        responses=error_responses(400),
        operation_class=OptionalBody,
    )
    async def logout(
        self,
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[RefreshRequest | None, Body()] = None,
    ) -> Response[LoggedOut]:
        """Ends the sign-in the refresh token (body or cookie) or access token (header or cookie)
        belongs to: its access and refresh tokens stop working at once. Clears the cookies."""
        if services.settings.auth_mode is not AuthMode.NONE:
            access, _ = credential_of(request)
            await auth.sign_out(
                db_session,
                _secret(services),
                refresh_token=(data.refresh_token if data else None) or request.cookies.get(REFRESH_COOKIE),
                access_token=access or None,
            )
        return Response(LoggedOut(status="logged_out"), cookies=_cleared_cookies(request))

    @get(
        "/oauth/{provider:str}",
        operation_id=_op("startOAuth"),
        status_code=302,
        responses=error_responses(404, 503),
    )
    async def oauth_start(
        self, request: Request[Any, Any, Any], services: NamedDependency[Services], provider: FromPath[str]
    ) -> Redirect:
        """Sends the browser to the provider's sign-in page (`AUTH_MODE=full`; providers in
        `GET config`). It comes back to `callback/{provider}`."""
        chosen = _oauth_provider(services, provider)
        base = services.settings.public_url or f"{request.url.scheme}://{request.url.netloc}"
        redirect_uri = f"{base.rstrip('/')}{_prefix(request)}/callback/{chosen.id}"
        async with _http() as http:
            url, state = await oauth.start(services.redis, http, chosen, redirect_uri)
        cookie = Cookie(
            key=STATE_COOKIE,
            value=state,
            max_age=oauth.STATE_TTL_S,
            httponly=True,
            samesite="lax",  # sent on the provider's top-level redirect back
            secure=_secure(request),
            path=_callback_path(request),
        )
        return Redirect(url, cookies=[cookie])

    @get(
        "/callback/{provider:str}",
        operation_id=_op("finishOAuth"),
        status_code=302,
        responses=error_responses(400, 401, 403, 404),
    )
    async def oauth_callback(
        self,
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        db_session: NamedDependency[AsyncSession],
        provider: FromPath[str],
        code: FromProvider = None,
        oauth_state: StateParam = None,
        error: FromProvider = None,
    ) -> Redirect:
        """Where the provider sends the browser back: checks `state` and PKCE, signs the user in
        (creating or linking the account), sets the session cookies and redirects to
        `AUTH_REDIRECT_URL`."""
        chosen = _oauth_provider(services, provider)
        if error or not code:
            raise oauth.OAuthFailed(f"the sign-in provider did not sign you in: {error or 'no code'}")
        async with _http() as http:
            profile = await oauth.finish(
                services.redis,
                http,
                chosen,
                code=code,
                state=oauth_state or "",
                bound_state=request.cookies.get(STATE_COOKIE, ""),
            )
        settings = services.settings
        user = await oauth.user_for(
            db_session, chosen.id, profile, may_create=settings.auth_registration_open
        )
        tokens = await auth.sign_in(db_session, user, f"oauth:{chosen.id}", _secret(services))
        gone = Cookie(key=STATE_COOKIE, value="", max_age=0, path=_callback_path(request))
        return Redirect(settings.auth_redirect_url, cookies=[*session_cookies(request, tokens), gone])

    @get("/me", operation_id=_op("getMe"), responses=error_responses(401), security=AUTHENTICATED)
    async def me(
        self,
        request: Request[Identity, Any, Any],
        services: NamedDependency[Services],
        db_session: NamedDependency[AsyncSession],
    ) -> Me:
        """The caller: id, email, display name, role (also as `roles`, a list), avatar, and how the
        request authenticated."""
        who = request.user
        user = await auth.get_user(db_session, who.user_id)
        return Me(
            id=who.user_id,
            email=who.email,
            name=auth.display_name(user) if user else who.email.split("@", 1)[0],
            role=who.role,
            roles=[who.role],
            avatar_url=user.avatar_url if user else None,
            auth_mode=services.settings.auth_mode.value,
            authenticated_by=who.method,
        )

    @get("/api-keys", operation_id=_op("listApiKeys"), responses=error_responses(401), security=AUTHENTICATED)
    async def list_keys(
        self, request: Request[Identity, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> list[ApiKeyInfo]:
        """The caller's API keys (prefix only; a key is shown once, when made)."""
        rows = await auth.list_api_keys(db_session, request.user.user_id)
        return [ApiKeyInfo(**_key_info(r)) for r in rows]

    @post(
        "/api-keys",
        operation_id=_op("createApiKey"),
        responses=error_responses(400, 401),
        security=AUTHENTICATED,
    )
    async def create_key(
        self,
        request: Request[Identity, Any, Any],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[CreateApiKey, Body()],
    ) -> NewApiKey:
        """A new key, `evr_` + 64 hex: send it as `Authorization: Bearer <key>` (or the key alone, as
        Everruns' SDK does). Shown only now. `scopes` may be left out or `["*"]`: a key acts with all
        of its owner's access; a narrower scope is refused (400), not silently widened."""
        row, key = await auth.create_api_key(
            db_session, request.user.user_id, data.name, data.expires_in_days, data.scopes
        )
        return NewApiKey(**_key_info(row), key=key)

    @delete(
        "/api-keys/{key_id:uuid}",
        operation_id=_op("deleteApiKey"),
        responses=error_responses(401, 404),
        security=AUTHENTICATED,
    )
    async def delete_key(
        self,
        request: Request[Identity, Any, Any],
        db_session: NamedDependency[AsyncSession],
        key_id: FromPath[uuid.UUID],
    ) -> None:
        """Revoke one of the caller's keys."""
        await auth.delete_api_key(db_session, request.user.user_id, key_id)


def _user_info(user: User, provider: str | None) -> UserInfo:
    return UserInfo(
        id=user.id,
        email=user.email,
        name=auth.display_name(user),
        avatar_url=user.avatar_url,
        roles=[user.role],
        auth_provider=provider,
        created_at=user.created_at,
    )


class UsersController(Controller):
    path = "/v1/users"
    tags = ["users"]
    security = AUTHENTICATED

    @get(operation_id="listUsers", responses=error_responses(401, 403))
    async def list_users(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        search: Annotated[str | None, QueryParameter(description="Substring of the email or name")] = None,
    ) -> Page[UserInfo]:
        """The accounts on this server, oldest first (Everruns' members page). Admins only: 403 for
        a user, who has no business enumerating the others."""
        if not who.is_admin:
            raise Forbidden("only an admin may list the users")
        rows, total = await auth.list_users(
            db_session, offset=page_params.offset, limit=page_params.limit, search=search
        )
        return page([_user_info(user, provider) for user, provider in rows], total, page_params)


def auth_routers() -> list[Router | type[Controller]]:
    # The seed serves /api/auth; Everruns' own clients and the other seeds use /v1/auth.
    routers: list[Router | type[Controller]] = [
        Router(path=prefix, route_handlers=[AuthController]) for prefix in ("/api/auth", "/v1/auth")
    ]
    return [*routers, UsersController]
