"""What a browser may make this server do, before any credential is looked at.

- A request that changes something (POST, PUT, PATCH, DELETE) and says where it comes from
  (`Origin`, else `Referer`) must come from this server, `EVERLOOP_PUBLIC_URL` or `CORS_ORIGINS`.
  Browsers always say so on a cross-site request, including the "simple" ones (a form post, a
  `no-cors` fetch with a `text/plain` JSON body) that need no CORS preflight; API clients such as
  curl say nothing and pass.
- With `AUTH_MODE=none` there is no credential to stop anything, so the `Host` must also be a
  loopback name or address (or one of `EVERLOOP_ALLOWED_HOSTS`): a page that rebinds its own DNS
  name to 127.0.0.1 then reaches nothing.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.exceptions import ClientException, PermissionDeniedException
from litestar.types import ASGIApp, Receive, Scope, Send

from core.settings import AuthMode, Settings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, "" when it has none."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""
    except ValueError:
        return ""


def trusted_origins(settings: Settings, own: str) -> set[str]:
    found = {own.lower(), *(o.lower() for o in settings.cors_origins)}
    if settings.public_url:
        found.add(origin_of(settings.public_url))
    return found


def _loopback(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^\[\]:]+)(:\d{1,5})?$")


def _host_name(host_header: str) -> str:
    """The name in a Host header (`[::1]:8000` -> `[::1]`); "" when it is not one."""
    found = _HOST.match(host_header)
    return found.group(1) if found else ""


class BrowserGuardMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.allowed_hosts = {h.lower() for h in settings.allowed_hosts}
        if settings.public_url:
            self.allowed_hosts.add((urlsplit(settings.public_url).hostname or "").lower())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            headers = Headers.from_scope(scope)
            host = headers.get("host", "")
            if self.settings.auth_mode is AuthMode.NONE:
                name = _host_name(host).lower()
                if not (_loopback(name) or name.strip("[]") in self.allowed_hosts):
                    raise ClientException(
                        "AUTH_MODE=none answers only requests addressed to a loopback name or address "
                        "(add others to EVERLOOP_ALLOWED_HOSTS)"
                    )
            if scope.get("method", "GET") not in SAFE_METHODS:
                source = headers.get("origin") or headers.get("referer")
                if source is not None:
                    scheme = scope.get("scheme", "http")
                    own = f"{scheme}://{host}"
                    if origin_of(source) not in trusted_origins(self.settings, own):
                        raise PermissionDeniedException(
                            "a change requested by a page of another site is refused (its Origin is not "
                            "this server, EVERLOOP_PUBLIC_URL or CORS_ORIGINS)"
                        )
        await self.app(scope, receive, send)
