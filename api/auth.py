"""`/api/auth/...`, also served at `/v1/auth/...`: login, the current user, API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, Router, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import Body, FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import error_responses
from api.security import ACCESS_COOKIE
from api.state import Services
from core.errors import InvalidInput
from core.identity import Identity
from core.services import auth
from core.settings import AuthMode

# Login attempts a minute: per email (guessing one account), per IP (a wider sweep; an office
# behind one address still fits).
LOGIN_LIMITS = {"email": 10, "ip": 30}


class AuthConfig(msgspec.Struct, kw_only=True):
    mode: str
    registration_open: bool
    oauth_providers: list[str]


class Login(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str
    expires_in: int


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


async def _rate_limit(services: Services, **keys: str) -> None:
    """A fixed one-minute window per key in Redis. Without Redis, logins are not limited."""
    for kind, value in keys.items():
        name = f"everloop:ratelimit:login:{kind}:{value}"
        try:
            count = await services.redis.incr(name)
            if count == 1:
                await services.redis.expire(name, 60)
            ttl = await services.redis.ttl(name)
        except Exception:  # noqa: S112 - availability over limiting when Redis is away
            continue
        if count > LOGIN_LIMITS[kind]:
            raise HTTPException(
                status_code=429,
                detail="too many login attempts; try again later",
                headers={"Retry-After": str(max(ttl, 1))},
            )


class AuthController(Controller):
    tags = ["auth"]

    @get("/config", operation_id=_op("getAuthConfig"), responses=error_responses())
    async def config(self, services: NamedDependency[Services]) -> AuthConfig:
        """How this server authenticates: the mode, whether registration is open, OAuth providers."""
        return AuthConfig(mode=services.settings.auth_mode.value, registration_open=False, oauth_providers=[])

    @post("/login", operation_id=_op("login"), status_code=200, responses=error_responses(400, 401, 429))
    async def login(
        self,
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[Login, Body()],
    ) -> Response[TokenPair]:
        """Email and password for an access token (15 min), also set as the `access_token` cookie."""
        settings = services.settings
        if settings.auth_mode is AuthMode.NONE:
            raise InvalidInput("AUTH_MODE=none needs no login")
        client = request.client.host if request.client else "unknown"
        await _rate_limit(services, ip=client, email=data.email.lower())
        user = await auth.login(db_session, data.email, data.password)
        if user is None:
            raise HTTPException(status_code=401, detail="wrong email or password")
        assert settings.auth_jwt_secret is not None
        token = auth.issue_access_token(user, settings.auth_jwt_secret)
        ttl = int(auth.ACCESS_TTL.total_seconds())
        cookie = Cookie(
            key=ACCESS_COOKIE,
            value=token,
            max_age=ttl,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
        pair = TokenPair(access_token=token, token_type="bearer", expires_in=ttl)  # noqa: S106 - not a secret
        return Response(pair, cookies=[cookie])

    @post(
        "/logout",
        operation_id=_op("logout"),
        status_code=200,
        responses=error_responses(),
        response_cookies=[Cookie(key=ACCESS_COOKIE, value="", max_age=0, path="/", httponly=True)],
    )
    async def logout(self) -> LoggedOut:
        """Clears the cookies (an access token stays valid until it expires: keep them short)."""
        return LoggedOut(status="logged_out")

    @get("/me", operation_id=_op("getMe"), responses=error_responses(401))
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

    @get("/api-keys", operation_id=_op("listApiKeys"), responses=error_responses(401))
    async def list_keys(
        self, request: Request[Identity, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> list[ApiKeyInfo]:
        """The caller's API keys (prefix only; a key is shown once, when made)."""
        rows = await auth.list_api_keys(db_session, request.user.user_id)
        return [ApiKeyInfo(**_key_info(r)) for r in rows]

    @post("/api-keys", operation_id=_op("createApiKey"), responses=error_responses(400, 401))
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

    @delete("/api-keys/{key_id:uuid}", operation_id=_op("deleteApiKey"), responses=error_responses(401, 404))
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
