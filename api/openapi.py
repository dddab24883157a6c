"""OpenAPI at /api-doc/openapi.json and Swagger UI at /swagger-ui/, its assets served from the
swagger-ui-py wheel so the page works without reaching a CDN."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import msgspec
from litestar import MediaType, get
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, Operation, RequestBody, SecurityRequirement, SecurityScheme, Tag
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

import core

SWAGGER_PATH = "/swagger-ui"
SCHEMA_PATH = "/api-doc/openapi.json"


@dataclass
class OptionalBody(Operation):
    """For routes whose JSON body may be left out (a token that comes from a cookie, a run with the
    defaults): the document says so, or a client and schemathesis take the body as required."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


class ErrorBody(msgspec.Struct, kw_only=True):
    error: str
    status: int
    field: str | None = None
    request_id: str | None = None


class DetailBody(msgspec.Struct, kw_only=True):
    """Opper's error form, under `/v2`."""

    detail: str


_DESCRIPTIONS = {
    400: "Invalid input; `field` names the value that failed",
    401: "Missing or invalid credentials",
    404: "No such resource",
    409: "Conflicts with the resource's current state",
    403: "Not allowed (for example a cookie-authenticated change from another origin)",
    413: "Request body over the size limit",
    415: "A request body in a media type (or Content-Encoding) the route does not read",
    422: "Invalid input (under /v2, Opper's status for a body that fails validation)",
    429: "Too many requests (the credential's rate limit, docs/rate_limits.md); `Retry-After` says when "
    "to try again",
    500: "Unexpected server error; `request_id` matches the log line",
    502: "A server this resource points at (an MCP server) did not answer properly",
    503: "A backing service is unavailable",
}


# Any route past authentication may answer 429 (api/rate_limit.py); only the open ones never do.
_LIMITED = {429}


def error_responses(*codes: int, limited: bool = True) -> dict[int, ResponseSpec]:
    """The documented error responses of a route. 400 and 500 are always among them (and replace
    Litestar's own 400, which documents a body this API never sends), and 429 unless the route is
    one the rate limits leave alone (`limited=False`)."""
    return {
        code: ResponseSpec(data_container=ErrorBody, description=_DESCRIPTIONS[code], generate_examples=False)
        for code in sorted({*codes, 400, 500, *(_LIMITED if limited else ())})
    }


def v2_error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """`error_responses` for the `/v2` routes, whose errors are Opper's `{"detail": "..."}` (422 for
    a body that fails validation; 400 for other bad input)."""
    return {
        code: ResponseSpec(
            data_container=DetailBody, description=_DESCRIPTIONS[code], generate_examples=False
        )
        for code in sorted({*codes, 400, 422, 429, 500})
    }


# What every route but health, readiness, the docs, the simulator and the credential-issuing auth
# routes declares (the middleware enforces it, except in AUTH_MODE=none).
AUTHENTICATED: list[SecurityRequirement] = [{"bearer": []}, {"cookie": []}]


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Everloop",
        version=core.__version__,
        description="A durable agent runtime: agents, sessions, messages and their live event streams.",
        path="/api-doc",
        render_plugins=[JsonRenderPlugin()],
        tags=[
            Tag(name="health", description="Liveness and readiness, without authentication"),
            Tag(
                name="auth",
                description="Registration, login, refresh, logout, OAuth, the current user and API keys "
                "(also under /v1/auth)",
            ),
            Tag(name="agents", description="Agents: prompt, default model, capabilities; import and export"),
            Tag(name="sessions", description="Conversations with an agent"),
            Tag(name="messages", description="What is said in a session; posting one starts a turn"),
            Tag(name="llm-providers", description="Where LLM calls go, with write-only encrypted keys"),
            Tag(name="llm-models", description="The models of each provider, and the default one"),
            Tag(name="capabilities", description="Built-in tool sets an agent can enable"),
            Tag(name="mcp-servers", description="MCP servers, each a capability (`mcp:{id}`) of its tools"),
            Tag(name="events", description="What happened in a session, as a list or a live SSE stream"),
            Tag(name="files", description="A session's own file tree (also the session_file_system tools)"),
            Tag(name="otlp", description="OpenTelemetry traces in (OTLP/HTTP, protobuf or JSON)"),
            Tag(name="v2-spans", description="Opper's spans, span feedback and span metrics (/v2)"),
            Tag(name="v2-traces", description="Opper's trace list and trace reads (/v2)"),
            Tag(name="simulator", description="OpenAI-compatible LLM simulator for development and tests"),
        ],
        use_handler_docstrings=True,
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An access token from login/refresh, or an `evr_` API key",
                ),
                "cookie": SecurityScheme(
                    type="apiKey",
                    name="access_token",
                    security_scheme_in="cookie",
                    description="The cookie login sets (browsers)",
                ),
            }
        ),
    )


def _swagger_assets() -> Path:
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("swagger-ui-py is not installed")
    return Path(spec.origin).parent / "static"


_SWAGGER_HTML = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Everloop API</title>
  <link rel="stylesheet" href="{SWAGGER_PATH}/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{SWAGGER_PATH}/assets/swagger-ui-bundle.js"></script>
  <script src="{SWAGGER_PATH}/assets/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{SCHEMA_PATH}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
    }});
  </script>
</body>
</html>
"""


@get(SWAGGER_PATH, media_type=MediaType.HTML, include_in_schema=False, sync_to_thread=False)
def swagger_ui() -> str:
    return _SWAGGER_HTML


def docs_handlers() -> list[ControllerRouterHandler]:
    return [
        swagger_ui,
        create_static_files_router(
            path=f"{SWAGGER_PATH}/assets", directories=[_swagger_assets()], include_in_schema=False
        ),
    ]
