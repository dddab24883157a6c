"""Calling an LLM provider through litellm for a `reason` step: the streamed call with its live
deltas, heartbeats and time limit, and its failures as Temporal's errors. services/model_calls.py
reaches the provider (address and key checks, pinned client, error wording); activities/llm.py
decides what to call and stores what comes back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import litellm
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import LoopDeps
from activities.heartbeat import cancel_requested, heartbeating
from core.db.models import LlmModel, LlmProvider
from core.schemas import events as ev
from core.schemas.turns import LlmFailure
from services import events, model_calls
from services.model_calls import ModelCallFailed, Reply

# One call's limit: heartbeats keep a slow stream alive, so this bounds a provider that drips tokens
# or never ends its stream.
LLM_CALL_LIMIT_S = 600.0


class Provider:
    """One worker's way to its LLM providers: services/model_calls.py's, with Temporal's errors."""

    def __init__(self, deps: LoopDeps) -> None:
        self.deps = deps
        self.access = model_calls.ModelAccess(deps.settings, deps.secrets)

    async def check_address(self, provider: LlmProvider) -> None:
        try:
            await self.access.check_address(provider)
        except ModelCallFailed as exc:
            raise as_application_error(exc) from None

    async def api_key(self, provider: LlmProvider) -> str | None:
        try:
            return await self.access.api_key(provider)
        except ModelCallFailed as exc:
            raise as_application_error(exc) from None

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
        params = model_calls.priced({**self.access.params(provider, model, api_key), **(call_params or {})})
        pinned = self.access.pinned_client(provider, params)
        if session_id is not None and activity.info().attempt > 1:
            # The failed attempt may have streamed part of a reply: clients drop it.
            reset = ev.OutputMessageReset(message_id=message_id, attempt=activity.info().attempt)
            await events.publish_ephemeral(self.deps.bus, session_id, reset, context)
        started = time.monotonic()
        try:
            async with heartbeating(), asyncio.timeout(LLM_CALL_LIMIT_S):
                chunks = await self._stream(
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
        duration_ms = int((time.monotonic() - started) * 1000)
        return Reply.of_stream(chunks, messages, params["model"], duration_ms, tools)

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
    ) -> list[Any]:
        async def publish(delta: str) -> None:
            if session_id is not None:
                piece = ev.OutputMessageDelta(message_id=message_id, delta=delta)
                await events.publish_ephemeral(self.deps.bus, session_id, piece, context)

        try:
            return await stream_call(params, messages, tools, parallel_tool_calls, publish)
        except Exception as exc:
            if model_calls.is_provider_error(exc):
                raise provider_error(exc, api_key) from None
            raise


async def stream_call(
    params: dict[str, Any],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    parallel_tool_calls: bool | None,
    on_delta: Callable[[str], Awaitable[None]],
) -> list[Any]:
    """The streamed litellm call of a reason step, its text deltas handed to `on_delta` as they
    come: litellm's chunks (Reply.of_stream reads the reply off them). Apart so that
    tests/bench/llm_overhead.py measures this very call."""
    chunks = []
    # Only with tools, and only when the agent or session chose: providers refuse the parameter
    # without tools, and leaving it out keeps each provider's own default.
    if tools and parallel_tool_calls is not None:
        params = {**params, "parallel_tool_calls": parallel_tool_calls}
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
        if delta:
            await on_delta(delta)
            # A cancel that lands in the publish can be lost there (heartbeat.cancel_requested).
            _stop_if_cancelled()
    return chunks


def _stop_if_cancelled() -> None:
    """Stops the stream when the activity was cancelled, even if its CancelledError went missing."""
    if cancel_requested():
        raise asyncio.CancelledError


def as_application_error(exc: ModelCallFailed) -> ApplicationError:
    """A failed model call as the step's failure: its details (LlmFailure) reach the workflow, and
    Temporal retries it only when another attempt could succeed."""
    return ApplicationError(
        exc.message,
        LlmFailure(status=exc.status, kind=exc.kind, message=exc.message),
        type=exc.kind,
        non_retryable=not exc.retryable,
    )


def fatal(kind: str, status: int | None, message: str) -> ApplicationError:
    return as_application_error(model_calls.fatal(kind, status, message))


def provider_error(exc: Exception, api_key: str | None) -> ApplicationError:
    """A provider's failure as the step's (model_calls.failure: never the provider's raw text)."""
    return as_application_error(model_calls.failure(exc, api_key))
