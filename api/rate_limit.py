"""The rate-limit middleware: after authentication, one limiter call per request (an SSE stream is
one request: counted when it connects, not per frame). Every response to an authenticated request
carries `X-RateLimit-Limit`, `-Remaining` and `-Reset`, errors included; past the limit it is a 429
with `Retry-After`, in the error form of its route family (api/errors.py), and the route never runs.

Open paths (health, readiness, the docs, the auth routes that hand out credentials) pass untouched;
the login and register attempts have their own limit per email and address (api/auth.py).
"""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.exceptions import TooManyRequestsException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.security import OPEN_PATHS
from core.identity import Identity
from services.rate_limits import RateLimits

_OPEN = re.compile("|".join(OPEN_PATHS))


def _open(scope: Scope) -> bool:
    return _OPEN.match(scope["path"]) is not None


class RateLimitMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)
    # The authentication middleware's own exclusions, on the request's path.
    should_bypass_for_scope = staticmethod(_open)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        who = scope.get("user")
        # The lifespan's limiter (api/state.py): None when limits are off for this deployment.
        limits: RateLimits | None = Litestar.from_scope(scope).state.services.rate_limits
        if limits is None or not isinstance(who, Identity):  # not authenticated: nothing to count
            await next_app(scope, receive, send)
            return
        decision = await limits.take(who)
        if decision is None:  # Redis away: served unlimited, without headers that would be guesses
            await next_app(scope, receive, send)
            return
        headers = decision.headers()
        if not decision.admitted:
            raise TooManyRequestsException(
                detail=f"rate limit exceeded ({decision.limit} requests per minute); "
                f"retry after {decision.retry_after_s} s",
                headers=headers,
            )
        encoded = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *encoded]
            await send(message)

        await next_app(scope, receive, send_with_headers)
