"""`reason`: one LLM call of a turn, streamed to the session's channel and stored once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx2
import litellm
import msgspec
import openai
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import EventBatch, LoopDeps
from activities.persist import persist
from activities.turns import add_act_completed, add_opening
from capabilities import registry
from core.db.models import Agent, Event, LlmModel, LlmProvider, Message, Session
from core.errors import InvalidInput, NotFound
from core.net import NetPolicy, PinnedTransport, check_public_url
from core.schemas.content import ToolCallPart, content_from_json
from core.schemas.turns import SESSION_GONE, LlmFailure, ReasonInput, ReasonResult, SessionLoop, ToolCallRef
from services import conversation, events, llm, mcp_servers
from services.sessions import message_to_schema

# litellm prints a "Provider List" banner whenever it cannot price a model (every simulator reply).
litellm.suppress_debug_info = True

# Provider answers that no retry can fix; anything else (429, 5xx, timeouts, connection errors)
# is retried by Temporal with backoff.
FATAL_STATUSES = {400, 401, 403, 404, 413, 422}
HEARTBEAT_EVERY_S = 1.0
PREVIEW = 200
LLM_CALL_LIMIT_S = 600.0


class ReasonActivities:
    def __init__(self, deps: LoopDeps) -> None:
        self.deps = deps

    @activity.defn(name=SessionLoop.REASON)
    async def reason(self, params: ReasonInput) -> ReasonResult:
        session_id = uuid.UUID(params.session_id)
        step = f"{params.turn_id}:{params.iteration}"
        # Each transaction is waited through a database outage inside this attempt (`persist`):
        # the LLM is called once and its reply is stored when the database is back.
        prepared = await persist(self.deps.db, lambda db: self._prepare(db, params), what=f"{step}:prepare")
        if isinstance(prepared, ReasonResult):
            return prepared  # stored by an earlier attempt, or an earlier message goes first
        await events.publish_all(self.deps.bus, prepared.stored)

        provider, api_key = prepared.provider, prepared.api_key
        tools = _tools(prepared.agent_tools.capability_ids, prepared.agent_tools.mcp)
        params_for_llm = llm.completion_params(provider, prepared.model, api_key, self.deps.simulator_url)
        pinned = self._pinned_client(provider, params_for_llm)
        if activity.info().attempt > 1:
            # The failed attempt may have streamed part of a reply: clients drop it.
            await events.publish_ephemeral(
                self.deps.bus,
                session_id,
                "output.message.reset",
                {"message_id": params.message_id, "attempt": activity.info().attempt},
            )
        started = time.monotonic()
        try:
            # Heartbeats keep a slow stream alive, so this bounds a provider that drips tokens or
            # never ends its stream (the step's own timeout also covers its waits for the database).
            async with _heartbeating(), asyncio.timeout(LLM_CALL_LIMIT_S):
                response = await self._stream(
                    session_id, params.message_id, params_for_llm, prepared.llm_messages, tools, api_key
                )
        except TimeoutError:
            message = f"the provider did not finish within {LLM_CALL_LIMIT_S:g} s"
            raise ApplicationError(
                message, LlmFailure(status=None, kind="llm_error", message=message), type="llm_error"
            ) from None
        finally:
            if pinned is not None:
                await pinned.aclose()
        reply = _Reply.of(response, params_for_llm["model"], int((time.monotonic() - started) * 1000), tools)
        stored, result = await persist(
            self.deps.db, lambda db: self._store_reply(db, params, prepared, reply), what=f"{step}:reply"
        )
        await events.publish_all(self.deps.bus, stored)
        return result

    async def _prepare(self, db: AsyncSession, params: ReasonInput) -> _Prepared | ReasonResult:
        """The step's first transaction: what the LLM call needs, and the turn's opening and the
        step's start stored. A ReasonResult instead when there is no call to make."""
        session_id = uuid.UUID(params.session_id)
        message_id = uuid.UUID(params.message_id)
        context = {"turn_id": params.turn_id, "input_message_id": params.input_message_id}
        step = f"{params.turn_id}:{params.iteration}"
        found = (
            await db.execute(
                select(Session, Agent)
                .join(Agent, Agent.id == Session.agent_id)
                .where(Session.id == session_id)
            )
        ).first()
        if found is None:
            raise ApplicationError(f"session {session_id} is gone", type=SESSION_GONE, non_retryable=True)
        session, agent = found
        # The agent's step limit, for a workflow that learns it from the turn's first step.
        limit = agent.max_iterations if params.open_turn else None
        stored = await conversation.load(db, session_id)
        by_id = {m.id: m for m in stored}
        if (done := by_id.get(message_id)) is not None:
            # An earlier attempt stored the reply and then died before reporting it: the LLM
            # is not called twice.
            return _result(done, limit, await _AgentTools.of(db, agent))
        input_message = by_id.get(uuid.UUID(params.input_message_id))
        if input_message is None:
            raise ApplicationError(
                f"message {params.input_message_id} is gone", type=SESSION_GONE, non_retryable=True
            )
        if params.open_turn and (earlier := await _earlier_unanswered(db, session_id, stored, input_message)):
            # Signals can arrive out of order (two API processes, a re-dispatch): messages are
            # answered in their stored order, so the workflow takes the earlier one first.
            return ReasonResult(
                message_id=params.message_id,
                tool_calls=[],
                text_preview="",
                earlier_message_id=str(earlier.id),
            )
        controls = input_message.controls or {}
        try:
            model = await llm.resolve_model(
                db,
                message_model_id=_uuid(controls.get("model_id")),
                session_model_id=session.model_id,
                agent_model_id=agent.default_model_id,
            )
        except NotFound as exc:
            raise _fatal("no_model", None, exc.message) from None
        provider = await db.get(LlmProvider, model.provider_id)
        assert provider is not None
        if provider.owner_id is not None and provider.base_url:
            if provider.provider_type not in llm.PINNABLE:  # set before users were limited
                raise _fatal(
                    "provider_address_refused",
                    None,
                    f"a user's {provider.provider_type} provider may not set base_url; ask an admin",
                )
            await self._check_public(provider.base_url)
        # The history's image URLs go to the provider with every call: a name's DNS answer may have
        # changed since the message was posted (posting refused the plain cases). Checked before
        # anything is written, so no lock is held while names resolve.
        policy = NetPolicy(allow_loopback=self.deps.settings.outbound_allow_loopback)
        refusal = await conversation.refused_image(conversation.for_turn(stored, input_message), policy)
        if refusal is not None:
            raise _fatal("image_url_refused", None, refusal)
        api_key = await self._api_key(provider)
        batch = EventBatch(session_id, context)
        stored += await conversation.close_dangling(db, session_id, stored)
        history = conversation.for_turn(stored, input_message)
        if params.open_turn:
            add_opening(batch, params.turn_id, input_message)
        if params.act is not None:
            add_act_completed(batch, params.act)
        reason_meta = {"model": model.model_id, "iteration": params.iteration}
        batch.add(
            "reason.started",
            {"agent_id": str(agent.id), "metadata": reason_meta},
            f"{step}:reason.started",
        )
        if not await batch.store(db, values={"status": "active"} if params.open_turn else None):
            raise ApplicationError(f"session {session_id} is gone", type=SESSION_GONE, non_retryable=True)
        await db.commit()
        agent_tools = await _AgentTools.of(db, agent)
        prompt = registry.system_prompt(agent_tools.capability_ids, agent.system_prompt, agent_tools.mcp)
        return _Prepared(
            stored=batch.stored,
            provider=provider,
            model=model,
            api_key=api_key,
            agent_tools=agent_tools,
            limit=limit,
            prompt=prompt,
            history_refs=[{"message_id": str(m.id), "role": m.role} for m in history],
            llm_messages=conversation.to_llm_messages(prompt, history),
        )

    async def _store_reply(
        self, db: AsyncSession, params: ReasonInput, prepared: _Prepared, reply: _Reply
    ) -> tuple[list[Event], ReasonResult]:
        """The step's second transaction: the reply as the agent's message, with its events."""
        session_id = uuid.UUID(params.session_id)
        message_id = uuid.UUID(params.message_id)
        context = {"turn_id": params.turn_id, "input_message_id": params.input_message_id}
        step = f"{params.turn_id}:{params.iteration}"
        model, provider, agent_tools = prepared.model, prepared.provider, prepared.agent_tools
        batch = EventBatch(session_id, context)
        # Takes the reply's number first: that locks the session row, so a racing attempt of
        # this step has committed its reply or never will (an early return gives the number back).
        sequence = await events.take_sequence(db, session_id, "last_message_sequence")
        if sequence is None:
            raise ApplicationError(f"session {session_id} is gone", type=SESSION_GONE, non_retryable=True)
        if (done := await db.get(Message, message_id)) is not None:
            return [], _result(done, prepared.limit, agent_tools)
        calls = reply.calls
        refs = [agent_tools.ref(c) for c in calls]
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        content += [msgspec.to_builtins(c) for c in calls]
        message = Message(
            id=message_id,
            session_id=session_id,
            sequence=sequence,
            role="agent",
            content=content,
            tags=[],
            metadata_={
                "model": model.model_id,
                "model_id": str(model.id),
                "provider_id": str(provider.id),
                "input_message_id": params.input_message_id,
                # Which calls wait for a person, decided once with the reply: a retried step
                # that finds the reply stored reads it here, whatever the agent's config is by then.
                "approvals": {r.id: r.approval_timeout_s for r in refs if r.require_approval},
            },
            idempotency_key=f"{step}:reply",
        )
        db.add(message)
        await db.flush()
        usage_data = {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}
        output = {"text": reply.text, "tool_calls": [msgspec.to_builtins(c) for c in calls]}
        batch.add(
            "llm.generation",
            {
                "messages": prepared.history_refs,
                "system_prompt": prepared.prompt,
                "tools": reply.tool_summaries,
                "output": output,
                "metadata": {
                    "model": model.model_id,
                    "provider": provider.provider_type,
                    "usage": usage_data,
                    "cost": float(reply.cost),
                    "duration_ms": reply.duration_ms,
                    "success": True,
                    "error": None,
                    "finish_reasons": [reply.finish_reason],
                    "response_id": reply.response_id,
                },
            },
            f"{step}:llm.generation",
        )
        batch.add(
            "message.agent",
            {
                "message": msgspec.to_builtins(message_to_schema(message)),
                "metadata": message.metadata_,
                "usage": usage_data,
            },
            f"{step}:message.agent",
        )
        batch.add(
            "reason.completed",
            {
                "success": True,
                "text_preview": reply.text[:PREVIEW],
                "has_tool_calls": bool(calls),
                "tool_call_count": len(calls),
                "error": None,
            },
            f"{step}:reason.completed",
        )
        if calls:
            batch.add(
                "act.started",
                {"tool_calls": [{"id": c.id, "name": c.name} for c in calls]},
                f"{step}:act.started",
            )
        for call, ref in zip(calls, refs, strict=True):
            if ref.require_approval:
                batch.add(
                    "tool.approval_requested",
                    {
                        "tool_call_id": call.id,
                        "tool_name": call.name,
                        "arguments": call.arguments,
                        "approval_timeout_s": ref.approval_timeout_s,
                    },
                    f"{step}:tool.approval_requested:{call.id}",
                )
        await batch.store(
            db,
            values={
                "input_tokens": Session.input_tokens + reply.input_tokens,
                "output_tokens": Session.output_tokens + reply.output_tokens,
                "cost": Session.cost + reply.cost,
            },
        )
        await db.commit()
        return batch.stored, _result(message, prepared.limit, agent_tools)

    def _pinned_client(self, provider: LlmProvider, params: dict[str, Any]) -> httpx2.AsyncClient | None:
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

    async def _check_public(self, base_url: str) -> None:
        """A user's provider was checked when its base_url was set; DNS may have changed since."""
        policy = NetPolicy(allow_loopback=self.deps.settings.outbound_allow_loopback)
        try:
            await check_public_url(base_url, "base_url", "a provider", policy)
        except InvalidInput as exc:
            raise _fatal("provider_address_refused", None, exc.message) from None

    async def _api_key(self, provider: LlmProvider) -> str | None:
        if provider.api_key_encrypted is None:
            return None
        if self.deps.secrets is None:
            raise _fatal(
                "llm_error", None, "the provider's API key cannot be read: SECRETS_ENCRYPTION_KEY is not set"
            )
        return await llm.api_key(self.deps.secrets, provider)

    async def _stream(
        self,
        session_id: uuid.UUID,
        message_id: str,
        params: dict[str, Any],
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        api_key: str | None,
    ) -> Any:
        chunks = []
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
                chunks.append(chunk)
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    await events.publish_ephemeral(
                        self.deps.bus,
                        session_id,
                        "output.message.delta",
                        {"message_id": message_id, "delta": delta},
                    )
        except litellm.exceptions.APIError as exc:  # includes every provider error litellm maps
            raise _provider_error(exc, api_key) from None
        except (litellm.exceptions.Timeout, litellm.exceptions.APIConnectionError) as exc:
            raise _provider_error(exc, api_key) from None
        except Exception as exc:
            if isinstance(getattr(exc, "status_code", None), int):
                raise _provider_error(exc, api_key) from None
            raise
        return litellm.stream_chunk_builder(chunks, messages=messages)


@asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeats on a timer, not per token: a slow first token is not a dead worker, and a cancel
    reaches the activity within the throttle interval."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


@dataclass(frozen=True)
class _Prepared:
    """What the step's first transaction read and stored, for the LLM call and the reply."""

    stored: list[Event]
    provider: LlmProvider
    model: LlmModel
    api_key: str | None
    agent_tools: _AgentTools
    limit: int | None
    prompt: str
    history_refs: list[dict[str, str]]
    llm_messages: list[dict[str, Any]]


@dataclass(frozen=True)
class _Reply:
    """The LLM's answer, kept in memory while the database is away (never asked for twice)."""

    text: str
    calls: list[ToolCallPart]
    input_tokens: int
    output_tokens: int
    cost: Decimal
    duration_ms: int
    finish_reason: str | None
    response_id: str | None
    tool_summaries: list[dict[str, Any]]

    @classmethod
    def of(cls, response: Any, model: str, duration_ms: int, tools: list[dict[str, Any]]) -> _Reply:
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        return cls(
            text=choice.message.content or "",
            calls=[
                ToolCallPart(id=c.id, name=c.function.name, arguments=_arguments(c.function.arguments))
                for c in (choice.message.tool_calls or [])
            ],
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=_cost(model, input_tokens, output_tokens),
            duration_ms=duration_ms,
            finish_reason=choice.finish_reason,
            response_id=getattr(response, "id", None),
            tool_summaries=[
                {"name": t["function"]["name"], "description": t["function"]["description"]} for t in tools
            ],
        )


async def _earlier_unanswered(
    db: AsyncSession, session_id: uuid.UUID, stored: list[Message], input_message: Message
) -> Message | None:
    """The first user message stored before `input_message` whose turn has not started, unless this
    turn has started already (an earlier attempt stored its opening: it keeps its message)."""
    answered = {conversation.turn_of(m) for m in stored}
    candidates = [
        m
        for m in stored
        if m.role == "user" and m.sequence < input_message.sequence and str(m.id) not in answered
    ]
    if not candidates:  # the usual case: every earlier message has the turn's messages to show for it
        return None
    ids = [str(m.id) for m in [*candidates, input_message]]
    started = set(
        (
            await db.execute(
                select(Event.context["input_message_id"].astext).where(
                    Event.session_id == session_id,
                    Event.type == "turn.started",
                    Event.context["input_message_id"].astext.in_(ids),
                )
            )
        ).scalars()
    )
    if str(input_message.id) in started:
        return None
    return next((m for m in candidates if str(m.id) not in started), None)


@dataclass(frozen=True)
class _AgentTools:
    """The agent's capabilities, their configuration and its MCP servers' tools: what a tool call's
    timeout and need for approval are read from."""

    capability_ids: list[str]
    configs: dict[str, Any]
    mcp: registry.Extra | None

    @classmethod
    async def of(cls, db: AsyncSession, agent: Agent) -> _AgentTools:
        ids = list(agent.capabilities)
        mcp = await mcp_servers.specs_for(db, agent.owner_id, ids)
        return cls(ids, dict(agent.capability_configs or {}), mcp)

    def ref(self, call: ToolCallPart) -> ToolCallRef:
        found = registry.find_tool(self.capability_ids, call.name, self.mcp)
        if found is None:  # run_tool answers it with an error
            return ToolCallRef(id=call.id, name=call.name, timeout_s=60.0)
        tool, spec = found
        try:
            config = spec.parse_config(self.configs.get(spec.id))
        except msgspec.ValidationError:  # run_tool answers it with an error, without running it
            config = spec.config()
        required, wait = spec.approval(tool, config)
        return ToolCallRef(
            id=call.id,
            name=call.name,
            timeout_s=spec.timeout_s,
            require_approval=required,
            approval_timeout_s=wait,
        )


def _stored_ref(ref: ToolCallRef, message: Message) -> ToolCallRef:
    """The call as its reply was stored: whether it waits for approval was decided then."""
    approvals = (message.metadata_ or {}).get("approvals")
    if approvals is None:  # a reply stored before approvals existed
        return ref
    required = ref.id in approvals
    return msgspec.structs.replace(
        ref, require_approval=required, approval_timeout_s=approvals.get(ref.id) if required else None
    )


def _result(message: Message, max_iterations: int | None, agent_tools: _AgentTools) -> ReasonResult:
    parts = content_from_json(message.content)
    calls = [p for p in parts if isinstance(p, ToolCallPart)]
    text = "".join(getattr(p, "text", "") for p in parts)
    return ReasonResult(
        message_id=str(message.id),
        tool_calls=[_stored_ref(agent_tools.ref(c), message) for c in calls],
        text_preview=text[:PREVIEW],
        max_iterations=max_iterations,
    )


def _tools(capability_ids: list[str], mcp: registry.Extra | None = None) -> list[dict[str, Any]]:
    """The agent's tools in the chat-completions `tools` format (MCP servers' from their cache)."""
    definitions = [tool.definition() for tool, _ in registry.tools_of(capability_ids, mcp)]
    return [
        {
            "type": "function",
            "function": {"name": d.name, "description": d.description, "parameters": d.parameters},
        }
        for d in definitions
    ]


def _arguments(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_value": value}


def _cost(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """litellm's price table; 0 where the model is not in it."""
    try:
        prompt, completion = litellm.cost_per_token(
            model=model, prompt_tokens=input_tokens, completion_tokens=output_tokens
        )
    except Exception:
        return Decimal(0)
    return Decimal(str(prompt + completion))


def _uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(value) if isinstance(value, str) else None


def _fatal(kind: str, status: int | None, message: str) -> ApplicationError:
    return ApplicationError(
        message, LlmFailure(status=status, kind=kind, message=message), type=kind, non_retryable=True
    )


_DESCRIPTIONS = {
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


def _provider_error(exc: Exception, api_key: str | None) -> ApplicationError:
    """What the user and the operator may see: the status and a fixed description, never the
    provider's raw text (it can echo keys or prompts)."""
    if isinstance(exc, litellm.exceptions.ImageFetchError):
        # For some providers (Anthropic over http://, Ollama, Gemini) litellm downloads image URLs
        # itself, with its own address check: a refusal or a failed download happened here, before
        # any request to the provider, and a retry would meet it again.
        activity.logger.warning("image fetch failed: %s", str(exc)[:500])
        return _fatal(
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
        description = _DESCRIPTIONS.get(status, "the provider failed")
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
