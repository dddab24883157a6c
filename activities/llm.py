"""`reason`: one LLM call of a turn, streamed to the session's channel and stored once."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.deps import EventBatch, LoopDeps, session_gone
from activities.metrics import Effect, happened
from activities.persist import persist
from activities.provider import Provider, fatal
from activities.turns import add_act_completed, add_opening
from capabilities import registry
from core.db.models import Agent, Event, LlmModel, LlmProvider, Message, Session
from core.errors import NotFound
from core.net import NetPolicy
from core.schemas import events as ev
from core.schemas.capabilities import ToolDefinition
from core.schemas.content import ToolCallPart, content_from_json
from core.schemas.turns import ReasonInput, ReasonResult, SessionLoop, ToolCallRef
from core.settings import Settings
from services import client_tools, conversation, events, forks, llm, mcp_servers, sessions
from services.model_calls import Reply
from services.sessions import message_to_schema

PREVIEW = 200


class ReasonActivities:
    def __init__(self, deps: LoopDeps) -> None:
        self.deps = deps
        self.provider = Provider(deps)

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

        agent_tools = prepared.agent_tools
        tools = _tools(agent_tools.capability_ids, agent_tools.mcp, agent_tools.client.values())
        happened(Effect.LLM_CALLED)
        reply = await self.provider.complete(
            session_id,
            params.message_id,
            prepared.provider,
            prepared.model,
            prepared.api_key,
            prepared.llm_messages,
            tools,
            context=ev.EventContext(turn_id=params.turn_id, input_message_id=params.input_message_id),
            parallel_tool_calls=prepared.parallel_tool_calls,
            call_params=prepared.call_params,
        )
        stored, result = await persist(
            self.deps.db, lambda db: self._store_reply(db, params, prepared, reply), what=f"{step}:reply"
        )
        if stored:  # none: a racing attempt of this step stored its reply first
            happened(Effect.REPLY_STORED)
        await events.publish_all(self.deps.bus, stored)
        return result

    async def _prepare(self, db: AsyncSession, params: ReasonInput) -> _Prepared | ReasonResult:
        """The step's first transaction: what the LLM call needs, and the turn's opening and the
        step's start stored. A ReasonResult instead when there is no call to make."""
        session_id = uuid.UUID(params.session_id)
        message_id = uuid.UUID(params.message_id)
        context = {"turn_id": params.turn_id, "input_message_id": params.input_message_id}
        step = f"{params.turn_id}:{params.iteration}"
        found = await sessions.with_agent(db, session_id)
        if found is None:
            raise session_gone(f"session {session_id}")
        session, agent = found
        # The agent's step limit, for a workflow that learns it from the turn's first step.
        limit = agent.max_iterations if params.open_turn else None
        stored = await conversation.load(db, session_id)
        by_id = {m.id: m for m in stored}
        if (done := by_id.get(message_id)) is not None:
            # An earlier attempt stored the reply and then died before reporting it: the LLM
            # is not called twice.
            return _result(done, limit, await _AgentTools.of(db, agent, session, self.deps.settings))
        input_message = by_id.get(uuid.UUID(params.input_message_id))
        if input_message is None:
            raise session_gone(f"message {params.input_message_id}")
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
            raise fatal("no_model", None, exc.message) from None
        provider = await db.get(LlmProvider, model.provider_id)
        assert provider is not None
        await self.provider.check_address(provider)
        # The history's image URLs go to the provider with every call: a name's DNS answer may have
        # changed since the message was posted (posting refused the plain cases). Checked before
        # anything is written, so no lock is held while names resolve.
        policy = NetPolicy(allow_loopback=self.deps.settings.outbound_allow_loopback)
        refusal = await conversation.refused_image(conversation.for_turn(stored, input_message), policy)
        if refusal is not None:
            raise fatal("image_url_refused", None, refusal)
        api_key = await self.provider.api_key(provider)
        # After the names above resolved (no row lock is held while they do), before anything is
        # stored: the session was ended (Opswald's end) and no cancel reached this turn, so it stops
        # here, before the model is called (finish_turn stores its opening and its end).
        if await _ended(db, session, params.open_turn):
            return ReasonResult(
                message_id=params.message_id, tool_calls=[], text_preview="", session_ended=True
            )
        batch = EventBatch(session_id, context)
        stored += await conversation.close_dangling(db, session_id, stored)
        history = conversation.for_turn(stored, input_message)
        if params.open_turn:
            add_opening(batch, params.turn_id, input_message)
        if params.act is not None:
            add_act_completed(batch, params.act)
        started = ev.ReasonStarted(
            agent_id=str(agent.id), metadata=ev.ReasonStep(model=model.model_id, iteration=params.iteration)
        )
        batch.add(started, f"{step}:reason.started")
        if not await batch.store(db, values=sessions.turn_opened() if params.open_turn else None):
            raise session_gone(f"session {session_id}")
        await db.commit()
        agent_tools = await _AgentTools.of(db, agent, session, self.deps.settings)
        # A forked session (an Opswald replay) reasons with the replay's modifications.
        changes = await forks.overrides(db, session)
        own_prompt = agent.system_prompt
        if changes is not None and changes.system_prompt is not None:
            own_prompt = changes.system_prompt
        prompt = registry.system_prompt(agent_tools.capability_ids, own_prompt, agent_tools.mcp)
        return _Prepared(
            stored=batch.stored,
            provider=provider,
            model=model,
            api_key=api_key,
            agent_tools=agent_tools,
            limit=limit,
            prompt=prompt,
            history_refs=[ev.HistoryRef(message_id=str(m.id), role=m.role) for m in history],
            llm_messages=conversation.to_llm_messages(prompt, history),
            parallel_tool_calls=sessions.parallel_tool_calls(session, agent),
            call_params=changes.call_params if changes is not None else None,
        )

    async def _store_reply(
        self, db: AsyncSession, params: ReasonInput, prepared: _Prepared, reply: Reply
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
            raise session_gone(f"session {session_id}")
        if (done := await db.get(Message, message_id)) is not None:
            return [], _result(done, prepared.limit, agent_tools)
        calls = reply.calls
        refs = [agent_tools.ref(c) for c in calls]
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        content += [msgspec.to_builtins(c) for c in calls]
        message = await conversation.add_message(
            db,
            session_id,
            "agent",
            content,
            sequence=sequence,
            message_id=message_id,
            metadata={
                "model": model.model_id,
                "model_id": str(model.id),
                "provider_id": str(provider.id),
                "input_message_id": params.input_message_id,
                # Which calls wait for a person, decided once with the reply: a retried step
                # that finds the reply stored reads it here, whatever the agent's config is by then.
                "approvals": {r.id: r.approval_timeout_s for r in refs if r.require_approval},
                # Likewise which calls are the client's to answer, and how long the turn waits.
                "client_tools": {r.id: r.result_timeout_s for r in refs if r.client_side},
            },
            idempotency_key=f"{step}:reply",
        )
        usage = ev.TokenUsage(input_tokens=reply.input_tokens, output_tokens=reply.output_tokens)
        generation = ev.LlmGeneration(
            messages=prepared.history_refs,
            system_prompt=prepared.prompt,
            tools=reply.tool_summaries,
            output=ev.LlmOutput(text=reply.text, tool_calls=calls),
            metadata=ev.GenerationMetadata(
                model=model.model_id,
                provider=provider.provider_type,
                usage=usage,
                cost=float(reply.cost),
                duration_ms=reply.duration_ms,
                success=True,
                error=None,
                finish_reasons=[reply.finish_reason],
                response_id=reply.response_id,
            ),
        )
        batch.add(generation, f"{step}:llm.generation")
        said = ev.MessageAgent(message=message_to_schema(message), metadata=message.metadata_, usage=usage)
        batch.add(said, f"{step}:message.agent")
        # The same reply under the type Everruns' clients read; stored with it, once per step.
        batch.add(ev.OutputMessageCompleted.of(said), f"{step}:output.message.completed")
        completed = ev.ReasonCompleted(
            success=True,
            text_preview=reply.text[:PREVIEW],
            has_tool_calls=bool(calls),
            tool_call_count=len(calls),
            error=None,
        )
        batch.add(completed, f"{step}:reason.completed")
        if calls:
            names = [ev.ToolCallName(id=c.id, name=c.name) for c in calls]
            batch.add(ev.ActStarted(tool_calls=names), f"{step}:act.started")
        for call, ref in zip(calls, refs, strict=True):
            if ref.require_approval:
                asked = ev.ToolApprovalRequested(
                    tool_call_id=call.id,
                    tool_name=call.name,
                    arguments=call.arguments,
                    approval_timeout_s=ref.approval_timeout_s,
                )
                batch.add(asked, f"{step}:tool.approval_requested:{call.id}")
        client_calls = [call for call, ref in zip(calls, refs, strict=True) if ref.client_side]
        if client_calls:
            # Stored with the reply: a client that sees the reply sees what it must answer, and the
            # session already says it waits (a result posted at once finds the turn waiting).
            requested = ev.ToolCallRequested(tool_calls=client_calls, timeout_s=agent_tools.client_timeout_s)
            batch.add(requested, f"{step}:tool.call_requested")
        await batch.store(
            db,
            values={
                "input_tokens": Session.input_tokens + reply.input_tokens,
                "output_tokens": Session.output_tokens + reply.output_tokens,
                "cost": Session.cost + reply.cost,
                **({"status": client_tools.WAITING} if client_calls else {}),
            },
        )
        await db.commit()
        return batch.stored, _result(message, prepared.limit, agent_tools)


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
    history_refs: list[ev.HistoryRef]
    llm_messages: list[dict[str, Any]]
    parallel_tool_calls: bool | None  # the session's, else the agent's; None: the provider's default
    call_params: dict[str, Any] | None = None  # a fork's modified parameters (temperature...)


async def _earlier_unanswered(
    db: AsyncSession, session_id: uuid.UUID, stored: list[Message], input_message: Message
) -> Message | None:
    """The first user message stored before `input_message` whose turn has not started, unless this
    turn has started already (an earlier attempt stored its opening: it keeps its message)."""
    answered = {conversation.turn_of(m) for m in stored}
    candidates = [
        m
        for m in stored
        if m.role == "user"
        and m.sequence < input_message.sequence
        and str(m.id) not in answered
        # A fork's copied history is never answered again (services/forks.py).
        and not (m.metadata_ or {}).get("copied_from")
    ]
    if not candidates:  # the usual case: every earlier message has the turn's messages to show for it
        return None
    ids = [str(m.id) for m in [*candidates, input_message]]
    started = set(
        (
            await db.execute(
                select(Event.context["input_message_id"].astext).where(
                    Event.session_id == session_id,
                    Event.type == ev.type_of(ev.TurnStarted),
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
    timeout and need for approval are read from. And the client-side tools (the agent's and the
    session's `tools`), whose calls wait for the client."""

    capability_ids: list[str]
    configs: dict[str, Any]
    mcp: registry.Extra | None
    client: dict[str, ToolDefinition]
    client_timeout_s: float
    local_tools: bool  # LOCAL_TOOL_ACTIVITIES

    @classmethod
    async def of(cls, db: AsyncSession, agent: Agent, session: Session, settings: Settings) -> _AgentTools:
        ids, configs = sessions.capabilities_of(session, agent)  # the agent's, then the session's own
        mcp = await mcp_servers.specs_for(db, agent.owner_id, ids)
        # A capability tool keeps its name: a client-side tool of the same name is not offered.
        taken = {tool.name for tool, _ in registry.tools_of(ids, mcp)}
        client = client_tools.declared(agent.tools or [], session.tools or [], taken)
        return cls(ids, configs, mcp, client, settings.client_tool_timeout_s, settings.local_tool_activities)

    def ref(self, call: ToolCallPart) -> ToolCallRef:
        found = registry.find_tool(self.capability_ids, call.name, self.mcp)
        if found is None and call.name in self.client:
            return ToolCallRef(
                id=call.id,
                name=call.name,
                timeout_s=60.0,
                client_side=True,
                result_timeout_s=self.client_timeout_s,
            )
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
            local=spec.local and self.local_tools,
        )


def _stored_ref(ref: ToolCallRef, message: Message) -> ToolCallRef:
    """The call as its reply was stored: whether it waits for approval, or for the client, was
    decided then."""
    metadata = message.metadata_ or {}
    approvals = metadata.get("approvals")
    if approvals is not None:  # (a reply stored before approvals existed has none)
        required = ref.id in approvals
        ref = msgspec.structs.replace(
            ref, require_approval=required, approval_timeout_s=approvals.get(ref.id) if required else None
        )
    client = metadata.get("client_tools")
    if client is not None:
        waits = ref.id in client
        ref = msgspec.structs.replace(
            ref,
            client_side=waits,
            result_timeout_s=client.get(ref.id) if waits else None,
            local=ref.local and not waits,
        )
    return ref


async def _ended(db: AsyncSession, session: Session, open_turn: bool) -> bool:
    """Whether the session has ended. A turn's opening step reads it under the session row's lock,
    which the end's update also takes: either the end came first and this turn stops, or the opening
    commits first and the end sees the session active and cancels the turn."""
    if not open_turn:
        return session.ended_at is not None
    locked = select(Session.ended_at).where(Session.id == session.id).with_for_update()
    return await db.scalar(locked) is not None


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


def _tools(
    capability_ids: list[str], mcp: registry.Extra | None = None, client: Iterable[ToolDefinition] = ()
) -> list[dict[str, Any]]:
    """The agent's tools in the chat-completions `tools` format (MCP servers' from their cache),
    then the client-side ones."""
    definitions = [tool.definition() for tool, _ in registry.tools_of(capability_ids, mcp)]
    definitions += list(client)
    return [
        {
            "type": "function",
            "function": {"name": d.name, "description": d.description, "parameters": d.parameters},
        }
        for d in definitions
    ]


def _uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(value) if isinstance(value, str) else None
