"""`POST /chat/completions`, `POST /embeddings` and `GET /models` under `/simulator/v1`.

Every error here leaves as an OpenAI error body (`{"error": {"message", "type", "param", "code"}}`)
because litellm reads that shape; the router's own exception handlers keep the app's
`{"error": "...", "status": N}` mapping away from these routes.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import JSONBody
from litestar.response import Stream
from litestar.types import ExceptionHandlersMap

from api.middleware import request_id_of
from api.simulator import embeddings, engine, faults, render
from api.simulator.config import SimulatorConfig
from api.simulator.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Embedding,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    OpenAIError,
    SimulatorModel,
    SimulatorModelList,
)

log = structlog.get_logger("everloop.simulator")

MODEL_IDS = ("sim-1", "sim-mini", "sim-large")
_MODELS_CREATED = 1735689600  # 2025-01-01: fixed, so the list is stable

_ERRORS = {
    400: "Malformed body or invalid `simulator` settings (`param` names the field), or an injected 400",
    401: "Injected authentication failure",
    404: "Injected unknown-model error",
    429: "Injected rate limit, with `Retry-After`",
    500: "Injected or unexpected server error",
    503: "Injected outage",
}


@dataclass
class _ChatCompletionOperation(Operation):
    """Documents the streamed form of the 200 next to the JSON one (a `ResponseSpec` has one type)."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            # One server-sent event, as OpenAPI 3.2's `itemSchema` describes them.
            data = Schema(type=OpenAPIType.STRING, description="JSON `chat.completion.chunk`; `[DONE]` last")
            stream = Schema(type=OpenAPIType.OBJECT, required=["data"], properties={"data": data})
            ok.content = {**(ok.content or {}), "text/event-stream": OpenAPIMediaType(schema=stream)}


def _error_specs(*codes: int) -> dict[int, ResponseSpec]:
    return {
        code: ResponseSpec(data_container=OpenAIError, description=_ERRORS[code], generate_examples=False)
        for code in codes
    }


@post(
    "/chat/completions",
    operation_id="simulatorCreateChatCompletion",
    summary="Simulated chat completion",
    status_code=200,
    operation_class=_ChatCompletionOperation,
    responses={
        200: ResponseSpec(
            data_container=ChatCompletion,
            description="A `chat.completion`; with `stream: true` a `text/event-stream` of "
            "`chat.completion.chunk`s ending in `data: [DONE]`",
            generate_examples=False,
        ),
        **_error_specs(400, 401, 404, 429, 500, 503),
    },
)
async def create_chat_completion(
    data: JSONBody[ChatCompletionRequest], request: Request[Any, Any, Any]
) -> Response[Any]:
    """OpenAI-compatible chat completions from a deterministic fake model, for development and tests
    without API keys. The optional `simulator` object in the body picks the behaviour: `echo`
    (default), `fixed` text, a `script` of steps (text and/or tool calls), injected errors and latency.
    Any model name is accepted."""
    config = data.simulator or SimulatorConfig()
    conversation = engine.fingerprint(data)
    error = config.error
    if error is not None and error.when == "json_schema" and engine.json_schema(data) is None:
        error = None
    failure = faults.due_failure(error, conversation)
    if failure is not None:
        if failure.status != "timeout":
            return faults.injected_response(failure)
        if await _client_left_within(request, failure.timeout_seconds):
            return faults.error_response(408, "The client closed the request while it hung.")
    reply = engine.plan_reply(data, config, conversation)
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if data.stream:
        include_usage = bool(data.stream_options and data.stream_options.include_usage)
        chunks = render.chunks(
            reply, response_id=completion_id, created=created, model=data.model, include_usage=include_usage
        )
        return Stream(
            _events(chunks, config), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
    if config.first_token_delay:
        await asyncio.sleep(config.first_token_delay)
    return Response(render.completion(reply, response_id=completion_id, created=created, model=data.model))


@post(
    "/embeddings",
    operation_id="simulatorCreateEmbeddings",
    summary="Simulated embeddings",
    status_code=200,
    responses=_error_specs(400, 500),
    sync_to_thread=False,
)
def create_embeddings(data: JSONBody[EmbeddingRequest]) -> EmbeddingList:
    """OpenAI-compatible embeddings from a deterministic fake model: each text's hashed bag of
    lowercase words, normalised, so texts that share words are similar. Any model name is accepted;
    `dimensions` (1 to 4096) sets the length, 256 by default."""
    texts = [data.input] if isinstance(data.input, str) else data.input
    dimensions = embeddings.DIMENSIONS if data.dimensions is None else data.dimensions
    if not 1 <= dimensions <= 4096:
        raise ValidationException(
            "dimensions: from 1 to 4096", extra=[{"key": "dimensions", "message": "from 1 to 4096"}]
        )
    vectors = [embeddings.embed(t, dimensions) for t in texts]
    tokens = sum(engine.estimate_tokens(t) for t in texts)
    return EmbeddingList(
        data=[
            Embedding(index=i, embedding=embeddings.as_base64(v) if data.encoding_format == "base64" else v)
            for i, v in enumerate(vectors)
        ],
        model=data.model,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


@get(
    "/models",
    operation_id="simulatorListModels",
    summary="Simulated models",
    responses=_error_specs(500),
    sync_to_thread=False,
)
def list_models() -> SimulatorModelList:
    """A few model ids in OpenAI's list format; chat completions accept any model name."""
    return SimulatorModelList(
        data=[SimulatorModel(id=name, created=_MODELS_CREATED, owned_by="everloop") for name in MODEL_IDS]
    )


async def _events(chunks: list[ChatCompletionChunk], config: SimulatorConfig) -> AsyncIterator[bytes]:
    for position, chunk in enumerate(chunks):
        delay = config.first_token_delay if position == 0 else config.chunk_delay
        if delay:
            await asyncio.sleep(delay)
        yield b"data: " + msgspec.json.encode(chunk) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def _client_left_within(request: Request[Any, Any, Any], seconds: float) -> bool:
    """Waits `seconds`, unless the client disconnects first (then True): a hung request must not
    outlive its client, or a server shutdown would wait for it."""

    async def disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(disconnect(), seconds)
    except TimeoutError:
        return False
    return True


# Litestar names the failing value in `key` ("simulator.mode"); a missing field only in the message.
_FIELD = re.compile(r"field `([^`]+)`")


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[OpenAIError]:
    if not isinstance(exc, ValidationException) or not isinstance(exc.extra, list) or not exc.extra:
        return faults.error_response(exc.status_code, exc.detail, headers=exc.headers)
    problem = exc.extra[0] if isinstance(exc.extra[0], dict) else {}
    message, key = str(problem.get("message") or exc.detail), problem.get("key")
    found = _FIELD.search(message)
    param = key if key and key != "data" else (found.group(1) if found else None)
    text = message if param is None or param in message else f"{param}: {message}"
    return faults.error_response(exc.status_code, text, param=param)


def _unhandled(request: Request[Any, Any, Any], exc: Exception) -> Response[OpenAIError]:
    request_id = request_id_of(request.scope)
    log.exception("unhandled simulator error", request_id=request_id, path=request.url.path)
    return faults.error_response(500, f"Internal simulator error (request id {request_id}).")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {HTTPException: _http_error, Exception: _unhandled}

simulator_router = Router(
    path="/simulator/v1",
    route_handlers=[create_chat_completion, create_embeddings, list_models],
    tags=["simulator"],
    exception_handlers=EXCEPTION_HANDLERS,
    # Long conversations are the point of some tests: a real provider's limit is its context window.
    request_max_body_size=64 * 1024 * 1024,
)
