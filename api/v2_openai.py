"""`POST /v2/openai/chat/completions`: OpenAI's chat-completions endpoint on the project's models, for
the official `openai` SDK (`base_url=<server>/v2/openai`) and any OpenAI-compatible client.

The call's errors keep the `/v2` body (`{"detail": "..."}`, api/errors.py) and add OpenAI's `error`
object beside it, so OpenAI's clients read their usual `error.message`; a missing credential (401)
or a body that fails validation (422) answers the plain `/v2` form (the `openai` SDK raises
`APIStatusError` for any non-2xx: `BadRequestError` for 400, `InternalServerError` for the 502 of a
failed provider)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, cast

from litestar import Controller, MediaType, Request, Response, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import Body
from litestar.response import Stream
from litestar.types import ExceptionHandlersMap
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import EXCEPTION_HANDLERS
from api.openapi import AUTHENTICATED, v2_error_responses
from api.state import Services
from core.identity import Identity
from core.schemas import v2_openai as schema
from services import model_calls, v2_openai

# OpenAI's `error.type` for each status its clients tell apart.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def _openai_form(handler: Callable[[Request[Any, Any, Any], Any], Response[Any]]) -> Any:
    def handle(request: Request[Any, Any, Any], exc: Any) -> Response[dict[str, Any]]:
        answered = handler(request, exc)  # the `/v2` form: {"detail": "..."}
        content = answered.content if isinstance(answered.content, dict) else {}
        detail = str(content.get("detail", "error"))
        status = answered.status_code or 500
        error = {
            "message": detail,
            "type": ERROR_TYPES.get(status, "api_error"),
            "param": None,
            "code": status,
        }
        return Response(
            {"detail": detail, "error": error},
            status_code=status,
            media_type=MediaType.JSON,
            headers=dict(answered.headers),
        )

    return handle


# The call's own errors (an unknown model, a failed provider, the database away...): a credential
# or a body refused before the call (401, 422) answers the plain `/v2` form, as every `/v2` route.
OPENAI_ERRORS: ExceptionHandlersMap = {
    kind: _openai_form(h)
    for kind, h in EXCEPTION_HANDLERS.items()
    if not (isinstance(kind, type) and issubclass(kind, HTTPException))
}


class V2OpenAIController(Controller):
    path = "/v2/openai"
    tags = ["v2-openai"]
    security = AUTHENTICATED
    exception_handlers = OPENAI_ERRORS

    @post(
        "/chat/completions",
        status_code=200,
        operation_id="v2ChatCompletions",
        responses=v2_error_responses(401, 422, 502),
    )
    async def chat_completions(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        services: NamedDependency[Services],
        data: Annotated[schema.ChatCompletionRequest, Body()],
    ) -> Response[schema.ChatCompletion]:
        """A chat completion in OpenAI's format on one of the caller's models (`model`: any name
        `GET /v2/models` lists). With `stream: true`, server-sent events `data: {chunk}` ending with
        `data: [DONE]` (usage in a last chunk when `stream_options.include_usage`). Each call is a
        span in the trace store; its id is in the `X-Span-Id` header."""
        access = model_calls.ModelAccess(services.settings, services.secrets)
        call = await v2_openai.prepare(db_session, who, data)
        headers = {"X-Span-Id": call.span_id}
        if not data.stream:
            return Response(await v2_openai.complete(db_session, who, access, call), headers=headers)
        include_usage = bool(data.stream_options and data.stream_options.include_usage)
        frames = await v2_openai.stream(services.db.session, who, access, call, include_usage)
        events = Stream(
            frames,
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        # Declared as the JSON answer so the spec describes `chat.completion` (a union with the
        # stream would leave the 200's schema empty); the docstring says what a stream sends.
        return cast("Response[schema.ChatCompletion]", events)
