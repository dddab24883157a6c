"""Calling an LLM provider through litellm for a `reason` step: the address and key checks, the
pinned client for users' providers, the streamed call with its deltas, the reply as stored, and
what a failure may say. activities/llm.py decides what to call and stores what comes back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx2
import litellm
import openai
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import LoopDeps
from activities.heartbeat import cancel_requested, heartbeating
from core.db.models import LlmModel, LlmProvider
from core.errors import InvalidInput
from core.net import NetPolicy, PinnedTransport, check_public_url
from core.schemas import events as ev
from core.schemas.content import ToolCallPart
from core.schemas.turns import LlmFailure
from services import events, llm

# litellm prints a "Provider List" banner whenever it cannot price a model (every simulator reply).
litellm.suppress_debug_info = True

# Provider answers that no retry can fix; anything else (429, 5xx, timeouts, connection errors)
# is retried by Temporal with backoff.
FATAL_STATUSES = {400, 401, 403, 404, 413, 422}
# One call's limit: heartbeats keep a slow stream alive, so this bounds a provider that drips tokens
# or never ends its stream.
LLM_CALL_LIMIT_S = 600.0


class Provider:
    """One worker's way to its LLM providers."""

    def __init__(self, deps: LoopDeps) -> None:
        self.deps = deps

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
        policy = NetPolicy(allow_loopback=self.deps.settings.outbound_allow_loopback)
        try:
            await check_public_url(provider.base_url, "base_url", "a provider", policy)
        except InvalidInput as exc:
            raise fatal("provider_address_refused", None, exc.message) from None

    async def api_key(self, provider: LlmProvider) -> str | None:
        if provider.api_key_encrypted is None:
            return None
        if self.deps.secrets is None:
            raise fatal(
                "llm_error", None, "the provider's API key cannot be read: SECRETS_ENCRYPTION_KEY is not set"
            )
        return await llm.api_key(self.deps.secrets, provider)

    async def complete(
        self,
        session_id: uuid.UUID | None,
        message_id: str,
        provider: LlmProvider,
        model: LlmModel,
        api_key: str | None,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        context: ev.EventContext | None = None,
        parallel_tool_calls: bool | None = None,
        *,
        call_params: dict[str, Any] | None = None,
    ) -> Reply:
        """One streamed call: deltas go out live as `output.message.delta` (with the turn's
        `context`), the whole reply comes back. Without a session (a replay's call) nothing is
        published; `call_params` (temperature...) are passed to the model as they are."""
        params = {
            **llm.completion_params(provider, model, api_key, self.deps.simulator_url),
            **(call_params or {}),
        }
        pinned = self.pinned_client(provider, params)
        if session_id is not None and activity.info().attempt > 1:
            # The failed attempt may have streamed part of a reply: clients drop it.
            reset = ev.OutputMessageReset(message_id=message_id, attempt=activity.info().attempt)
            await events.publish_ephemeral(self.deps.bus, session_id, reset, context)
        started = time.monotonic()
        try:
            async with heartbeating(), asyncio.timeout(LLM_CALL_LIMIT_S):
                response = await self._stream(
                    session_id, message_id, params, messages, tools, api_key, context, parallel_tool_calls
                )
        except TimeoutError:
            text = f"the provider did not finish within {LLM_CALL_LIMIT_S:g} s"
            raise ApplicationError(
                text, LlmFailure(status=None, kind="llm_error", message=text), type="llm_error"
            ) from None
        finally:
            if pinned is not None:
                await pinned.aclose()
        return Reply.of(response, params["model"], int((time.monotonic() - started) * 1000), tools)

    def pinned_client(self, provider: LlmProvider, params: dict[str, Any]) -> httpx2.AsyncClient | None:
        """A user's provider is called through a client that connects only to addresses it has just
        checked and follows no redirect (else a public base_url could redirect or rebind inside)."""
        if provider.owner_id is None or not provider.base_url or provider.provider_type not in llm.PINNABLE:
            return None
        policy = NetPolicy(allow_loopback=self.deps.settings.outbound_allow_loopback)
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

    async def _stream(
        self,
        session_id: uuid.UUID | None,
        message_id: str,
        params: dict[str, Any],
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        api_key: str | None,
        context: ev.EventContext | None,
        parallel_tool_calls: bool | None = None,
    ) -> Any:
        chunks = []
        # Only with tools, and only when the agent or session chose: providers refuse the parameter
        # without tools, and leaving it out keeps each provider's own default.
        if tools and parallel_tool_calls is not None:
            params = {**params, "parallel_tool_calls": parallel_tool_calls}
        try:
            stream = await litellm.acompletion(
                **params,
                messages=messages,
                tools=tools or None,
                stream=True,
                stream_options={"include_usage": True},
                num_retries=0,
                timeout=300,
            )
            async for chunk in stream:
                _stop_if_cancelled()
                chunks.append(chunk)
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta and session_id is not None:
                    piece = ev.OutputMessageDelta(message_id=message_id, delta=delta)
                    await events.publish_ephemeral(self.deps.bus, session_id, piece, context)
                    # A cancel that lands in the publish can be lost there (heartbeat.cancel_requested).
                    _stop_if_cancelled()
        except litellm.exceptions.APIError as exc:  # includes every provider error litellm maps
            raise provider_error(exc, api_key) from None
        except (litellm.exceptions.Timeout, litellm.exceptions.APIConnectionError) as exc:
            raise provider_error(exc, api_key) from None
        except Exception as exc:
            if isinstance(getattr(exc, "status_code", None), int):
                raise provider_error(exc, api_key) from None
            raise
        return litellm.stream_chunk_builder(chunks, messages=messages)


def _stop_if_cancelled() -> None:
    """Stops the stream when the activity was cancelled, even if its CancelledError went missing."""
    if cancel_requested():
        raise asyncio.CancelledError


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
            tool_summaries=[
                # An ingested span's tools (a replay) may have no description.
                ev.ToolSummary(name=t["function"]["name"], description=t["function"].get("description") or "")
                for t in tools
            ],
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
    try:
        prompt, completion = litellm.cost_per_token(
            model=model, prompt_tokens=input_tokens, completion_tokens=output_tokens
        )
    except Exception:
        return Decimal(0)
    return Decimal(str(prompt + completion))


def fatal(kind: str, status: int | None, message: str) -> ApplicationError:
    return ApplicationError(
        message, LlmFailure(status=status, kind=kind, message=message), type=kind, non_retryable=True
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


def provider_error(exc: Exception, api_key: str | None) -> ApplicationError:
    """What the user and the operator may see: the status and a fixed description, never the
    provider's raw text (it can echo keys or prompts)."""
    if isinstance(exc, litellm.exceptions.ImageFetchError):
        # For some providers (Anthropic over http://, Ollama, Gemini) litellm downloads image URLs
        # itself, with its own address check: a refusal or a failed download happened here, before
        # any request to the provider, and a retry would meet it again.
        activity.logger.warning("image fetch failed: %s", str(exc)[:500])
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
    activity.logger.warning("LLM call failed: %s: %s", type(exc).__name__, detail[:500])
    return ApplicationError(
        message,
        LlmFailure(status=status, kind="llm_error", message=message),
        type="llm_error",
        # A redirect is not followed (it could lead anywhere) and a retry would meet it again.
        non_retryable=status in FATAL_STATUSES or (status is not None and 300 <= status < 400),
    )
