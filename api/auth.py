"""`/api/auth/...`, also served at `/v1/auth/...`: registration, login, refresh, logout, OAuth, the
current user, API keys.

Cookies: `access_token` (HttpOnly, SameSite=Lax, path `/`) authenticates browser requests;
`refresh_token` (HttpOnly, SameSite=Strict) is sent only to the auth routes of the prefix that set it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import httpx
import msgspec
from litestar import Controller, Request, Response, Router, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.openapi.spec import Operation, RequestBody
from litestar.params import Body, FromPath, QueryParameter
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses
from api.security import ACCESS_COOKIE, credential_of
from api.state import Services
from core.errors import Forbidden, InvalidInput, NotFound
from core.identity import Identity
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


class AuthConfig(msgspec.Struct, kw_only=True):
    mode: str
    registration_open: bool
    oauth_providers: list[str]


class Login(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class Register(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=1024)]


class RefreshRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    refresh_token: str | None = None  # else the `refresh_token` cookie


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


class LoggedOut(msgspec.Struct, kw_only=True):
    status: str


class Me(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    email: str
    role: str
    auth_mode: str
    authenticated_by: str


class CreateApiKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None


class ApiKeyInfo(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class NewApiKey(ApiKeyInfo, kw_only=True):
    key: str  # shown once


def _op(name: str) -> Any:
    """Operation ids for a route served under both prefixes."""

    def make(handler: Any, method: Any, components: list[Any]) -> str:
        return name if str(components[0]) == "api" else f"{name}V1"

    return make


def _key_info(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
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
        Cookie(
            key=REFRESH_COOKIE,
            value=tokens.refresh_token,
            max_age=int(auth.REFRESH_TTL.total_seconds()),
            httponly=True,
            samesite="strict",
            secure=secure,
            path=_prefix(request),
        ),
    ]


def _cleared_cookies(request: Request[Any, Any, Any]) -> list[Cookie]:
    return [
        Cookie(key=ACCESS_COOKIE, value="", max_age=0, path="/", httponly=True, samesite="lax"),
        Cookie(
            key=REFRESH_COOKIE, value="", max_age=0, path=_prefix(request), httponly=True, samesite="strict"
        ),
    ]


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


@dataclass
class _OptionalBody(Operation):
    """For routes whose JSON body may be left out (the token then comes from a cookie)."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


class AuthController(Controller):
    tags = ["auth"]

    @get("/config", operation_id=_op("getAuthConfig"), responses=error_responses())
    async def config(self, services: NamedDependency[Services]) -> AuthConfig:
        """How this server authenticates: the mode, whether registration is open, OAuth providers."""
        settings = services.settings
        full = settings.auth_mode is AuthMode.FULL
        return AuthConfig(
            mode=settings.auth_mode.value,
            registration_open=full and settings.auth_registration_open,
            oauth_providers=list(oauth.providers(settings)) if full else [],
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
        """Open an account (`AUTH_MODE=full` with registration open): email and a password of at least 8
        characters. Signs the new user in: the same answer and cookies as login. 409 if the email has
        an account."""
        settings = services.settings
        if settings.auth_mode is not AuthMode.FULL or not settings.auth_registration_open:
            raise Forbidden("registration is closed on this server")
        await _rate_limit(
            services, "register", REGISTER_LIMIT, email=data.email.lower(), ip=_client_ip(request)
        )
        user = await auth.register(db_session, data.email, data.password)
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
        operation_class=_OptionalBody,
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
        operation_class=_OptionalBody,
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
            path=f"{_prefix(request)}/callback",
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
        gone = Cookie(key=STATE_COOKIE, value="", max_age=0, path=f"{_prefix(request)}/callback")
        return Redirect(settings.auth_redirect_url, cookies=[*session_cookies(request, tokens), gone])

    @get("/me", operation_id=_op("getMe"), responses=error_responses(401), security=AUTHENTICATED)
    async def me(self, request: Request[Identity, Any, Any], services: NamedDependency[Services]) -> Me:
        """The caller."""
        who = request.user
        return Me(
            id=who.user_id,
            email=who.email,
            role=who.role,
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
        """A new key, `evr_` + 64 hex: send it as `Authorization: Bearer <key>`. Shown only now."""
        row, key = await auth.create_api_key(
            db_session, request.user.user_id, data.name, data.expires_in_days
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


def auth_routers() -> list[Router]:
    # The seed serves /api/auth; Everruns' own clients and the other seeds use /v1/auth.
    return [Router(path=prefix, route_handlers=[AuthController]) for prefix in ("/api/auth", "/v1/auth")]
