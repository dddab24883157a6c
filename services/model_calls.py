"""Reaching a model through litellm, for whoever calls one: the worker's steps (activities/provider.py
adds heartbeats, live deltas and Temporal's error types) and the API's `/v2` calls. Here: the
address and key checks, the pinned client for users' providers, the reply as stored, its cost, and
what a failure may say (never the provider's raw text)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx2
import litellm
import openai

from core.crypto import SecretBox
from core.db.models import LlmModel, LlmProvider
from core.errors import BadGateway, InvalidInput
from core.net import NetPolicy, PinnedTransport, check_public_url
from core.schemas import events as ev
from core.schemas.content import ToolCallPart
from core.settings import Settings
from services import llm

# litellm prints a "Provider List" banner whenever it cannot price a model (every simulator reply).
litellm.suppress_debug_info = True

log = logging.getLogger(__name__)

# Provider answers that no retry can fix; anything else (429, 5xx, timeouts, connection errors)
# is worth another attempt.
FATAL_STATUSES = {400, 401, 403, 404, 413, 422}

# The litellm options a call may carry: a request's per-model `options` in /v2/call and functions,
# and a custom model's `extra` (call defaults a request overrides; services/v2_models). Anything
# else (`api_base`, `api_key`, headers, a client) could send the call or a deployment's key
# elsewhere, so it is dropped from a request and refused on a model. One list for all of them.
CALL_OPTIONS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "reasoning_effort",
        "response_format",
    }
)

DESCRIPTIONS = {
    301: "the provider redirects elsewhere, which is not followed",
    302: "the provider redirects elsewhere, which is not followed",
    303: "the provider redirects elsewhere, which is not followed",
    307: "the provider redirects elsewhere, which is not followed",
    308: "the provider redirects elsewhere, which is not followed",
    400: "the provider rejected the request",
    401: "the provider refused the API key",
    403: "the provider denied access to this model",
    404: "the provider does not know this model",
    413: "the conversation is too large for the provider",
    422: "the provider rejected the request",
    429: "the provider is rate limiting",
}


class ModelCallFailed(BadGateway):
    """A model call that failed: `kind` names why (`llm_error`, `provider_address_refused`,
    `image_fetch_failed`), `status` is the provider's HTTP status when it answered, and `retryable`
    says whether another attempt could succeed. The message is safe to show to the caller."""

    def __init__(self, kind: str, status: int | None, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retryable = retryable


def fatal(kind: str, status: int | None, message: str) -> ModelCallFailed:
    return ModelCallFailed(kind, status, message, retryable=False)


class ModelAccess:
    """One process's way to its LLM providers (the worker's or the API's)."""

    def __init__(self, settings: Settings, secrets: SecretBox | None) -> None:
        self.settings = settings
        self.secrets = secrets

    @property
    def simulator_url(self) -> str:
        return f"{self.settings.api_url}/simulator/v1"

    async def check_address(self, provider: LlmProvider) -> None:
        """A user's provider must be on a public address: checked when its base_url was set, and
        again here (DNS may have changed since). Admins' providers may point anywhere."""
        if provider.owner_id is None or not provider.base_url:
            return
        if provider.provider_type not in llm.PINNABLE:  # set before users were limited
            raise fatal(
                "provider_address_refused",
                None,
                f"a user's {provider.provider_type} provider may not set base_url; ask an admin",
            )
        policy = NetPolicy(allow_loopback=self.settings.outbound_allow_loopback)
        try:
            await check_public_url(provider.base_url, "base_url", "a provider", policy)
        except InvalidInput as exc:
            raise fatal("provider_address_refused", None, exc.message) from None

    async def api_key(self, provider: LlmProvider) -> str | None:
        if provider.api_key_encrypted is None:
            return None
        if self.secrets is None:
            raise fatal(
                "llm_error", None, "the provider's API key cannot be read: SECRETS_ENCRYPTION_KEY is not set"
            )
        return await llm.api_key(self.secrets, provider)

    def params(self, provider: LlmProvider, model: LlmModel, api_key: str | None) -> dict[str, Any]:
        """litellm's parameters for a call to `model` (model string, base URL, key, its settings)."""
        return llm.completion_params(provider, model, api_key, self.simulator_url)

    def pinned_client(self, provider: LlmProvider, params: dict[str, Any]) -> httpx2.AsyncClient | None:
        """A user's provider is called through a client that connects only to addresses it has just
        checked and follows no redirect (else a public base_url could redirect or rebind inside).
        Sets `params["client"]`; the caller closes the returned client."""
        if provider.owner_id is None or not provider.base_url or provider.provider_type not in llm.PINNABLE:
            return None
        policy = NetPolicy(allow_loopback=self.settings.outbound_allow_loopback)
        http = httpx2.AsyncClient(
            transport=PinnedTransport(policy),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx2.Timeout(300, connect=10),
        )
        params["client"] = openai.AsyncOpenAI(
            api_key=params.get("api_key") or "none",
            base_url=params["api_base"],
            http_client=http,
            max_retries=0,
        )
        return http

    @asynccontextmanager
    async def reaching(
        self, provider: LlmProvider, model: LlmModel, extra: dict[str, Any] | None = None
    ) -> AsyncIterator[tuple[dict[str, Any], str | None]]:
        """The checked way to `model` for one call: litellm's parameters (with `extra` on top and,
        for a user's provider, the pinned client) and the decrypted key, to redact from errors.
        Failures of the call inside are mapped by `failure`."""
        await self.check_address(provider)
        api_key = await self.api_key(provider)
        params = {**self.params(provider, model, api_key), **(extra or {})}
        pinned = self.pinned_client(provider, params)
        try:
            yield params, api_key
        finally:
            if pinned is not None:
                await pinned.aclose()


def is_provider_error(exc: Exception) -> bool:
    """Whether litellm raised `exc` for the provider's answer (or its absence), not a bug here."""
    if isinstance(
        exc,
        litellm.exceptions.APIError | litellm.exceptions.Timeout | litellm.exceptions.APIConnectionError,
    ):
        return True
    return isinstance(getattr(exc, "status_code", None), int)


def failure(exc: Exception, api_key: str | None) -> ModelCallFailed:
    """What the user and the operator may see of a provider's failure: the status and a fixed
    description, never the provider's raw text (it can echo keys or prompts)."""
    if isinstance(exc, litellm.exceptions.ImageFetchError):
        # For some providers (Anthropic over http://, Ollama, Gemini) litellm downloads image URLs
        # itself, with its own address check: a refusal or a failed download happened here, before
        # any request to the provider, and a retry would meet it again.
        log.warning("image fetch failed: %s", str(exc)[:500])
        return fatal(
            "image_fetch_failed",
            None,
            "this server could not fetch an image URL of the conversation (its address was refused, "
            "or it did not answer with an image), so the model was not called",
        )
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    if status is None:
        description = (
            "the provider did not answer in time"
            if "Timeout" in type(exc).__name__
            else "the provider could not be reached"
        )
    else:
        description = DESCRIPTIONS.get(status, "the provider failed")
    message = f"{description} (HTTP {status})" if status else description
    detail = str(exc)
    if api_key:
        detail = detail.replace(api_key, "[redacted]")
    log.warning("LLM call failed: %s: %s", type(exc).__name__, detail[:500])
    # A redirect is not followed (it could lead anywhere) and a retry would meet it again.
    retryable = not (status in FATAL_STATUSES or (status is not None and 300 <= status < 400))
    return ModelCallFailed("llm_error", status, message, retryable=retryable)


@dataclass(frozen=True)
class Reply:
    """The LLM's answer, kept in memory while the database is away (never asked for twice)."""

    text: str
    calls: list[ToolCallPart]
    input_tokens: int
    output_tokens: int
    cost: Decimal
    duration_ms: int
    finish_reason: str | None
    response_id: str | None
    tool_summaries: list[ev.ToolSummary]

    @classmethod
    def of_stream(
        cls,
        chunks: list[Any],
        messages: list[dict[str, Any]],
        model: str,
        duration_ms: int,
        tools: list[dict[str, Any]],
    ) -> Reply:
        """The reply of a streamed call, from litellm's chunks. litellm has already assembled the
        whole response once at the stream's end (its usage chunk comes from it), and running
        `litellm.stream_chunk_builder` again here cost 1.5-5 ms a call (docs/benchmarks.md,
        "litellm's cost per call"): the few fields a Reply keeps are read off the chunks instead,
        the way the builder reads them. A stream without usage (a provider that ignores
        `stream_options`) still goes through the builder, which counts the tokens."""
        streamed = _Streamed.of(chunks)
        if streamed is None:
            return cls.of(litellm.stream_chunk_builder(chunks, messages=messages), model, duration_ms, tools)
        input_tokens = int(getattr(streamed.usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(streamed.usage, "completion_tokens", 0) or 0)
        return cls(
            text=streamed.text,
            calls=streamed.calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost_of(model, input_tokens, output_tokens),
            duration_ms=duration_ms,
            finish_reason=streamed.finish_reason,
            response_id=streamed.response_id,
            tool_summaries=summaries(tools),
        )

    @classmethod
    def of(cls, response: Any, model: str, duration_ms: int, tools: list[dict[str, Any]]) -> Reply:
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        return cls(
            text=choice.message.content or "",
            calls=[
                ToolCallPart(id=c.id, name=c.function.name, arguments=arguments(c.function.arguments))
                for c in (choice.message.tool_calls or [])
            ],
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost_of(model, input_tokens, output_tokens),
            duration_ms=duration_ms,
            finish_reason=choice.finish_reason,
            response_id=getattr(response, "id", None),
            tool_summaries=summaries(tools),
        )


def summaries(tools: list[dict[str, Any]]) -> list[ev.ToolSummary]:
    # An ingested span's tools (a replay) may have no description.
    return [
        ev.ToolSummary(name=t["function"]["name"], description=t["function"].get("description") or "")
        for t in tools
    ]


@dataclass
class _Call:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Streamed:
    """What a Reply keeps of a streamed response, read off litellm's chunks as
    `litellm.stream_chunk_builder` reads them: the first choice's text, its tool calls joined by
    index (the last id and name seen, the arguments' fragments in order; a call without an id or
    a name is dropped), the last finish reason reported (else `stop`), the first
    chunk's id and the last usage."""

    text: str
    calls: list[ToolCallPart]
    finish_reason: str
    response_id: str | None
    usage: Any

    @classmethod
    def of(cls, chunks: list[Any]) -> _Streamed | None:
        """None when no chunk carries usage: the builder must count the tokens."""
        text: list[str] = []
        calls: dict[int, _Call] = {}
        finish_reason: str | None = None
        usage = None
        for chunk in chunks:
            usage = getattr(chunk, "usage", None) or usage
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            finish_reason = choice.finish_reason or finish_reason
            delta = choice.delta
            if delta is None:
                continue
            if delta.content is not None:
                text.append(delta.content)
            for fragment in getattr(delta, "tool_calls", None) or ():
                function = getattr(fragment, "function", None)
                if function is None:  # a custom tool call: a Reply has no place for it
                    continue
                call = calls.setdefault(fragment.index or 0, _Call())
                call.id = fragment.id or call.id
                call.name = function.name or call.name
                if function.arguments:
                    call.arguments.append(function.arguments)
        if usage is None:
            return None
        return cls(
            text="".join(text),
            calls=[
                ToolCallPart(id=c.id, name=c.name, arguments=arguments("".join(c.arguments)))
                for _, c in sorted(calls.items())
                if c.id and c.name
            ],
            finish_reason=finish_reason or "stop",
            response_id=getattr(chunks[0], "id", None) if chunks else None,
            usage=usage,
        )


def arguments(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_value": value}


def cost_of(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """litellm's price table; 0 where the model is not in it."""
    if model in _UNPRICED:
        return Decimal(0)
    try:
        prompt, completion = litellm.cost_per_token(
            model=model, prompt_tokens=input_tokens, completion_tokens=output_tokens
        )
    except litellm.exceptions.ModelNotMappedError:
        # litellm searches its whole table (and its generalisations) before giving up: 0.4-0.8 ms
        # a call for every call to a model it does not know (the simulator's, a local server's).
        # Its table is read once at import (LITELLM_LOCAL_MODEL_COST_MAP) and never changes here,
        # so a miss stays a miss.
        if len(_UNPRICED) < _UNPRICED_MAX:
            _UNPRICED.add(model)
        return Decimal(0)
    except Exception:
        return Decimal(0)
    return Decimal(str(prompt + completion))


def priced(params: dict[str, Any]) -> dict[str, Any]:
    """`params` for a call to a model litellm cannot price (cost_of has met it), with that price
    (0) stated: litellm prices every response itself, two or three times per streamed call, and
    for an unknown model each of those is a failed search of its table. With the price given
    (litellm's per-call `input_cost_per_token`/`output_cost_per_token`, which register nothing)
    its own figure is the 0 this module records, found without the search. A model it can price
    is left to its table."""
    if params["model"] not in _UNPRICED:
        return params
    return {**params, "input_cost_per_token": 0.0, "output_cost_per_token": 0.0}


# Models litellm's table does not price (see cost_of); bounded, since model names come from users.
_UNPRICED: set[str] = set()
_UNPRICED_MAX = 10_000
