"""`/v2/openai/chat/completions`: OpenAI's chat-completions wire format on the project's models.

The model is a name `model_names` resolves (kind "chat"); the call goes through
`model_calls.ModelAccess.reaching` (address and key checks, the pinned client for users' providers)
and `litellm.acompletion` with no retries of litellm's own (the caller's client retries, and counts
its attempts). Each call is one span, a trace of its own in the caller's default project: the
request's messages and tools in, the answer's message out, with model, tokens and cost; a failed
call is a span with its error. A provider's failure is `ModelCallFailed` (a 502) whose message never
carries the provider's raw text."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import litellm
import msgspec
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import LlmModel
from core.errors import InvalidInput
from core.identity import Identity
from core.net import NetPolicy, url_refusal
from core.schemas import v2_openai as schema
from core.schemas.llm import SIMULATOR_TYPES
from core.schemas.traces import SpanStatus, SpanWrite
from services import model_calls, model_names, replays, traces
from services.model_calls import CALL_OPTIONS

log = structlog.get_logger("everloop.v2")

SPAN_NAME = "openai.chat.completions"
SPAN_KIND = "llm"

Sessions = Callable[[], AsyncSession]
# How long an image URL's name may take to resolve (services/conversation, a turn's images).
IMAGE_DNS_TIMEOUT_S = 5.0


@dataclass
class Prepared:
    """A resolved call: the model row and the arguments for litellm besides its route."""

    model: LlmModel
    arguments: dict[str, Any]
    span_id: str
    started: datetime


async def prepare(db: AsyncSession, who: Identity, body: schema.ChatCompletionRequest) -> Prepared:
    model = await model_names.resolve(db, who.user_id, body.model, kind="chat")  # 400 when disabled
    arguments: dict[str, Any] = {}
    if model.provider.provider_type not in SIMULATOR_TYPES:
        # A custom model's options are defaults the request overrides (services/v2_models); a
        # simulator model's settings are its script, sent by `completion_params` instead.
        arguments.update({k: v for k, v in (model.settings or {}).items() if k in CALL_OPTIONS})
    for field in schema.FORWARDED:
        value = getattr(body, field)
        if value is not None:
            arguments[field] = value
    arguments["messages"] = body.messages
    return Prepared(model, arguments, uuid.uuid4().hex[:16], datetime.now(UTC))


async def check_images(access: model_calls.ModelAccess, call: Prepared) -> None:
    """The messages' image URLs, as a turn's and a replay's are checked: a provider may have this
    server fetch them (Anthropic over http, Gemini, Ollama), so one on a private address is a 400
    naming it, before the call."""
    messages = call.arguments["messages"]
    policy = NetPolicy(allow_loopback=access.settings.outbound_allow_loopback)
    for url in replays.image_urls([m for m in messages if isinstance(m, dict)]):
        reason = await url_refusal(url, policy, dns_wait_s=IMAGE_DNS_TIMEOUT_S)
        if reason is not None:
            raise InvalidInput(f"messages: the image URL {url!r} is refused: {reason}", field="messages")


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else value


async def record(db: AsyncSession, who: Identity, call: Prepared, **fields: Any) -> None:
    """The call's span (a trace of its own), committed."""
    status: SpanStatus = "error" if fields.get("error") else "ok"
    span = SpanWrite(
        span_id=call.span_id,
        name=SPAN_NAME,
        kind=SPAN_KIND,
        status=status,
        input={k: v for k, v in call.arguments.items() if k in ("messages", "tools", "tool_choice")},
        metadata={
            "route": "/v2/openai/chat/completions",
            "model_pk": str(call.model.id),
            "options": {
                k: v for k, v in call.arguments.items() if k not in ("messages", "tools", "tool_choice")
            },
        },
        start_time=call.started,
        end_time=datetime.now(UTC),
        model=model_names.route_name(call.model.provider.provider_type, call.model.model_id),
        provider=call.model.provider.provider_type,
        **fields,
    )
    await traces.finish_call(db, who.user_id, span)


def _usage_fields(route: str, usage: Any) -> dict[str, Any]:
    given = int(getattr(usage, "prompt_tokens", 0) or 0)
    made = int(getattr(usage, "completion_tokens", 0) or 0)
    return {"input_tokens": given, "output_tokens": made, "cost": model_calls.cost_of(route, given, made)}


async def complete(
    db: AsyncSession, who: Identity, access: model_calls.ModelAccess, call: Prepared
) -> schema.ChatCompletion:
    """One answer, not streamed, in OpenAI's `chat.completion` shape."""
    await check_images(access, call)
    route = ""
    try:
        async with access.reaching(call.model.provider, call.model) as (params, api_key):
            route = params["model"]
            try:
                response = await litellm.acompletion(**params, **call.arguments, num_retries=0)
            except Exception as exc:
                if not model_calls.is_provider_error(exc):
                    raise
                raise model_calls.failure(exc, api_key) from None
    except model_calls.ModelCallFailed as failed:
        await record(db, who, call, error=failed.message)
        raise
    raw = response.model_dump(exclude_none=True)
    answer = schema.ChatCompletion(
        id=str(raw.get("id") or f"chatcmpl-{call.span_id}"),
        object="chat.completion",
        created=int(raw.get("created") or time.time()),
        model=str(raw.get("model") or call.model.model_id),
        choices=[_choice(c) for c in raw.get("choices") or []],
        usage=raw.get("usage"),
        system_fingerprint=raw.get("system_fingerprint"),
    )
    output = answer.choices[0].get("message") if answer.choices else None
    await record(db, who, call, output=output, **_usage_fields(route, response.usage))
    return answer


# litellm adds its own fields to a choice and a message; OpenAI's are these.
CHOICE_FIELDS = ("index", "message", "delta", "finish_reason", "logprobs")
MESSAGE_FIELDS = ("role", "content", "refusal", "tool_calls", "function_call", "audio", "annotations")


def _choice(choice: dict[str, Any]) -> dict[str, Any]:
    out = {k: choice[k] for k in CHOICE_FIELDS if k in choice}
    for key in ("message", "delta"):
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k in MESSAGE_FIELDS}
    if "message" in out:
        out["message"].setdefault("content", None)
    if "finish_reason" in choice or "message" in out:
        out["finish_reason"] = choice.get("finish_reason")
    return out


def sse(data: Any) -> bytes:
    return b"data: " + msgspec.json.encode(data) + b"\n\n"


DONE = b"data: [DONE]\n\n"


async def stream(
    sessions: Sessions,
    who: Identity,
    access: model_calls.ModelAccess,
    call: Prepared,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """Starts the streamed call (a failure to start raises here, before any byte is sent: a 502) and
    returns its SSE frames: `data: {chunk}` ... `data: [DONE]`. A failure mid-stream ends it with a
    `data: {"error": ...}` frame (the status is sent by then). The span is written when it ends."""
    await check_images(access, call)
    stack = AsyncExitStack()
    try:
        params, api_key = await stack.enter_async_context(access.reaching(call.model.provider, call.model))
    except model_calls.ModelCallFailed as refused:  # the address or the key, before any call
        async with sessions() as db:
            await record(db, who, call, error=refused.message)
        raise
    route = params["model"]
    try:
        # Usage is always asked for (the span's tokens); the client gets it only if it asked.
        response = await litellm.acompletion(
            **params,
            **call.arguments,
            stream=True,
            stream_options={"include_usage": True},
            num_retries=0,
        )
    except Exception as exc:
        await stack.aclose()
        failed = model_calls.failure(exc, api_key) if model_calls.is_provider_error(exc) else None
        async with sessions() as db:
            await record(db, who, call, error=failed.message if failed else "the call failed")
        if failed is None:
            raise
        raise failed from None
    return _frames(stack, sessions, who, call, response, route, api_key, include_usage)


async def _frames(
    stack: AsyncExitStack,
    sessions: Sessions,
    who: Identity,
    call: Prepared,
    response: Any,
    route: str,
    api_key: str | None,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    chunks: list[Any] = []
    recorded = False

    async def save(error: str | None) -> None:
        await stack.aclose()
        built = _built(chunks, call.arguments["messages"])
        fields: dict[str, Any] = {"error": error} if error else {}
        if built is not None:
            choices = getattr(built, "choices", None) or []
            if choices and not error:
                fields["output"] = _plain(choices[0].message)
            fields.update(_usage_fields(route, getattr(built, "usage", None)))
        async with sessions() as db:
            await record(db, who, call, **fields)

    try:
        async for chunk in response:
            chunks.append(chunk)
            raw = chunk.model_dump(exclude_none=True)
            frame = {
                "id": raw.get("id") or f"chatcmpl-{call.span_id}",
                "object": "chat.completion.chunk",
                "created": int(raw.get("created") or time.time()),
                "model": raw.get("model") or call.model.model_id,
                "choices": [_choice(c) for c in raw.get("choices") or []],
            }
            usage = raw.get("usage")
            if usage and include_usage:
                frame["usage"] = usage
            if frame["choices"] or "usage" in frame:
                yield sse(frame)
        # The span before [DONE]: a client that reads [DONE] may close at once (which cancels
        # this generator), and may look for the span next.
        recorded = True
        await save(None)
        yield DONE
    except Exception as exc:
        failed = model_calls.failure(exc, api_key) if model_calls.is_provider_error(exc) else None
        error = failed.message if failed else "the model's stream failed"
        if failed is None:
            log.exception("chat stream failed", span_id=call.span_id)
        if not recorded:
            recorded = True
            await save(error)
        yield sse({"error": {"message": error, "type": "api_error", "code": 502}})
    finally:
        if not recorded:
            # The client went away mid-stream (this generator is being cancelled or closed): the
            # span is still written, by a task the cancellation does not reach.
            await asyncio.shield(save("the client closed the stream"))


def _built(chunks: list[Any], messages: list[dict[str, Any]]) -> Any:
    """The whole answer from its chunks (litellm's builder), for the span."""
    if not chunks:
        return None
    try:
        return litellm.stream_chunk_builder(chunks, messages=messages)
    except Exception:  # a span without output rather than a lost one
        log.warning("could not rebuild the streamed answer", exc_info=True)
        return None
