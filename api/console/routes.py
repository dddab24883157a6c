"""Serves the web console: its page at `/`, its modules and vendored libraries under `/console/`.

The console is plain ES modules (no build step: what is committed is what runs) that call the
public API with the browser's cookies, so everything it shows is something any API client can do;
these routes hand out files only, to anyone, and hold no data. See docs/console.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import MediaType, Response, get
from litestar.config.compression import CompressionConfig
from litestar.datastructures import CacheControlHeader
from litestar.middleware import DefineMiddleware
from litestar.middleware.compression import CompressionMiddleware
from litestar.router import Router
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/console"

# Scripts, styles, images and requests only from this origin, no inline script or style, no framing:
# a reply's Markdown is sanitised before it is shown, and this is the second wall behind that. No
# remote images: one in a reply would load on render, sending whatever its URL holds to any host.
# data: and blob: are an attached image's preview.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
# Revalidated on every load (an ETag makes that a 304): an upgraded server is never run with the
# previous version's modules from the browser's cache.
REVALIDATE = CacheControlHeader(no_cache=True)
# Only the console's own responses are compressed: the API's streams must not wait on a gzip buffer.
COMPRESSED = [
    DefineMiddleware(CompressionMiddleware, config=CompressionConfig(backend="gzip", minimum_size=500))
]


@get(
    "/",
    include_in_schema=False,
    media_type=MediaType.HTML,
    cache_control=REVALIDATE,
    middleware=COMPRESSED,
    sync_to_thread=False,
)
def console_page() -> Response[bytes]:
    """The console's one HTML page; its views are routed in the browser (`#/chat`, `#/agents`...)."""
    return Response((STATIC / "index.html").read_bytes(), headers=PAGE_HEADERS)


def _with_page_headers(response: Response[Any]) -> Response[Any]:
    # The files get the page's headers too: /console/index.html is the same page by another path.
    response.headers.update(PAGE_HEADERS)
    return response


def console_handlers() -> list[ControllerRouterHandler]:
    assets: Router = create_static_files_router(
        path=PREFIX,
        directories=[STATIC],
        name="console",
        cache_control=REVALIDATE,
        middleware=COMPRESSED,
        include_in_schema=False,
        after_request=_with_page_headers,
    )
    return [console_page, assets]
