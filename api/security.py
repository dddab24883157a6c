"""Who is calling: every request outside the open routes carries a credential.

`AUTH_MODE=none` is one built-in admin (loopback only); `admin` and `full` accept `Authorization:
Bearer <access token or evr_ API key>`, an API key alone (`Authorization: evr_...` or `ApiKey
evr_...`, as Everruns' SDK sends it), or the `access_token` cookie. A cookie-authenticated request
that changes state must come from an allowed origin (SameSite=Lax plus this check defeat CSRF).
"""

from __future__ import annotations

import re
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware

from api.guard import origin_of, trusted_origins
from api.state import Services
from core.identity import BUILTIN_ADMIN, Identity
from core.settings import AuthMode, Settings
from services import auth, projects

ACCESS_COOKIE = "access_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Open to anyone: liveness, docs, the simulator, the console's files, and the routes that hand out
# credentials.
OPEN_PATHS = [
    r"^/health$",
    r"^/ready$",
    r"^/api-doc",
    r"^/swagger-ui",
    r"^/simulator/",
    # Prometheus scrapes: METRICS_TOKEN is their credential, checked by the route (api/metrics.py).
    r"^/metrics$",
    # The web console's page and files (it reads every piece of data through the API, signed in).
    r"^/$",
    r"^/console/",
    # A knowledge file's upload URL: its token is the credential (services/knowledge.py).
    r"^/v2/knowledge/uploads/",
    r"^/(api|v1)/auth/(config|login|logout|register|refresh|oauth|callback)(/|$)",
]
# What a project key (`vgl_`) may do: ingest and read its project's traces, nothing else (the trace
# services keep it to its project): 001's traces and spans, Opswald's events, OTLP export. Any
# other route, or changing a trace, is a 403 with it.
PROJECT_KEY_ROUTES = re.compile(r"^/v1/(traces|spans|events|otlp)(/|$)")
PROJECT_KEY_METHODS = {"GET", "HEAD", "POST"}
# ... and read its project's replays and golden tests (starting or controlling one spends the
# account's models: the services refuse that too).
PROJECT_KEY_READ_ROUTES = re.compile(r"^/v1/(replays|golden-tests)(/|$)")
PROJECT_KEY_READ_METHODS = {"GET", "HEAD"}


def credential_of(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[str, str]:
    """The request's credential and where it came from (`token` header or `cookie`); "" if none."""
    header = connection.headers.get("authorization", "").strip()
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer" and credential:
        return credential, "token"
    # Everruns' SDK sends its key with no scheme word (and Everruns also takes `ApiKey <key>`). Only
    # a string shaped exactly like one of our keys is taken that way: anything else in the header
    # is no credential, so a token or a typo never passes for a key.
    if auth.looks_like_api_key(header):
        return header, "token"
    if scheme.lower() == "apikey" and auth.looks_like_api_key(credential):
        return credential, "token"
    return connection.cookies.get(ACCESS_COOKIE, "").strip(), "cookie"


class AuthenticationMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        services: Services = connection.app.state.services
        settings = services.settings
        # A flag after the first success: the accounts the start-up could not make (PostgreSQL away).
        await services.ensure_accounts()
        if settings.auth_mode is AuthMode.NONE:
            return AuthenticationResult(user=BUILTIN_ADMIN, auth=None)
        credential, source = credential_of(connection)
        if not credential:
            raise NotAuthorizedException("a credential is required", headers={"WWW-Authenticate": "Bearer"})
        if source == "cookie" and connection.scope.get("method", "GET") not in SAFE_METHODS:
            _check_origin(connection, settings)
        if credential.startswith(projects.PROJECT_KEY_PREFIX):
            return await _project_key(connection, services, credential)
        assert settings.auth_jwt_secret is not None
        async with services.db.session() as db:
            found = await auth.authenticate(db, credential, settings.auth_jwt_secret)
        if found is None:
            raise NotAuthorizedException(
                "the credential is invalid or expired", headers={"WWW-Authenticate": "Bearer"}
            )
        who = Identity(
            user_id=found.user.id,
            email=found.user.email,
            role=found.user.role,
            method="cookie" if source == "cookie" else found.method,
            expires_at=found.expires_at,
            credential_id=found.key_id,
        )
        return AuthenticationResult(user=who, auth=credential)


async def _project_key(
    connection: ASGIConnection[Any, Any, Any, Any], services: Services, credential: str
) -> AuthenticationResult:
    found = None
    if projects.looks_like_project_key(credential):
        async with services.db.session() as db:
            found = await projects.authenticate_key(db, credential)
    if found is None:
        raise NotAuthorizedException(
            "the credential is invalid or expired", headers={"WWW-Authenticate": "Bearer"}
        )
    method = connection.scope.get("method", "GET")
    path = connection.scope["path"]
    allowed = (PROJECT_KEY_ROUTES.match(path) and method in PROJECT_KEY_METHODS) or (
        PROJECT_KEY_READ_ROUTES.match(path) and method in PROJECT_KEY_READ_METHODS
    )
    if not allowed:
        raise PermissionDeniedException(
            "a project key may only ingest and read its project's traces, and read its replays "
            "and golden tests"
        )
    # Never an admin's powers through a project key, whoever owns the project.
    who = Identity(
        user_id=found.user.id,
        email=found.user.email,
        role="user",
        method="project_key",
        project_id=found.project_id,
        credential_id=found.key_id,
    )
    return AuthenticationResult(user=who, auth=credential)


def _check_origin(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings) -> None:
    """A cookie-authenticated change must say it comes from a trusted origin (saying nothing is not
    enough here: the cookie is sent whoever asks)."""
    source = connection.headers.get("origin") or connection.headers.get("referer") or ""
    own = f"{connection.url.scheme}://{connection.url.netloc}"
    if origin_of(source) not in trusted_origins(settings, own):
        raise PermissionDeniedException("a cookie-authenticated change must come from an allowed origin")


def authentication_middleware() -> DefineMiddleware:
    return DefineMiddleware(AuthenticationMiddleware, exclude=OPEN_PATHS)
