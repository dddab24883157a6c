"""`run_tool`: one tool call of a turn, its result stored once as a tool message."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.deps import EventBatch, LoopDeps
from activities.heartbeat import heartbeating
from activities.persist import persist
from capabilities import registry
from capabilities.base import ToolContext, ToolError
from core.db.base import utcnow
from core.db.models import Event, Message
from core.net import NetPolicy
from core.schemas import events as ev
from core.schemas.content import ToolCallPart, content_from_json, json_value, result_json
from core.schemas.turns import (
    ApprovalDecision,
    KeptToolResult,
    SessionLoop,
    ToolInput,
    ToolOutcome,
    ToolStatus,
)
from services import client_tools, conversation, events, knowledge, mcp_servers, sessions
from services.model_calls import ModelAccess

# The largest finished result kept in the activity's heartbeat for a later attempt to store.
KEEP_MAX_BYTES = 64 * 1024
# The longest result (its JSON text) passed on: past what any built-in tool returns (web_fetch's
# 2 MB body is at most 12 MB of escaped JSON text) and far past any model's context (a million
# tokens is about 4 MB). A larger one is an error result the model can act on (ask for less)
# instead of a next call that fails for a reason it cannot see, and no row or event grows unbounded.
RESULT_MAX_CHARS = 16 * 1024 * 1024


@dataclass(frozen=True)
class _Begun:
    """What the first transaction read and stored, for running the tool and storing its result."""

    stored: list[Event]
    call: ToolCallPart
    capability_ids: list[str]
    capability_configs: dict[str, Any]
    mcp: registry.Extra | None
    denial: str | None
    turn_input: str | None
    ctx: ToolContext
    # Events made but not stored yet (a local call stores them with its result).
    unstored: EventBatch | None = None


def _kept_result() -> KeptToolResult | None:
    """The result an earlier attempt of this call finished with and kept in its heartbeat."""
    for detail in activity.info().heartbeat_details:
        try:
            return msgspec.convert(detail, KeptToolResult)
        except msgspec.ValidationError:
            continue
    return None


class ToolActivities:
    def __init__(self, deps: LoopDeps) -> None:
        self.deps = deps

    @activity.defn(name=SessionLoop.RUN_TOOL)
    async def run_tool(self, params: ToolInput) -> ToolOutcome:
        if activity.info().is_local:
            return await self._run_short(params)
        key = f"{params.turn_id}:{params.tool_call_id}"
        # Both transactions wait out a database outage inside this attempt (`persist`): the tool's
        # result is stored when the database is back, not thrown away.
        kept = _kept_result()
        # Every heartbeat of this attempt carries a kept result on: Temporal keeps only the latest
        # heartbeat's details, and a later attempt needs them if this one dies too.
        carried = (kept,) if kept is not None else ()
        begun = await persist(
            self.deps.db, lambda db: self._begin(db, params), what=f"{key}:start", details=carried
        )
        if isinstance(begun, ToolOutcome):
            return begun
        await events.publish_all(self.deps.bus, begun.stored)
        # An earlier attempt's kept result is one that ran the tool and died (or timed out) while
        # the database was away: it is stored now, and the tool does not run twice.
        finished = await self._run(params, begun, kept)
        # Kept in the heartbeat, so a later attempt finds it (only if small: heartbeats are
        # bounded payloads; a large result is at-least-once, as every tool call is).
        details = (finished,) if len(msgspec.json.encode(finished)) <= KEEP_MAX_BYTES else ()
        stored, outcome = await persist(
            self.deps.db,
            lambda db: self._store_result(db, params, begun, finished),
            what=f"{key}:result",
            details=details,
        )
        await events.publish_all(self.deps.bus, stored)
        return outcome

    async def _run_short(self, params: ToolInput) -> ToolOutcome:
        """A short pure tool's call, run as a local activity (`CapabilitySpec.local`): read, run
        and stored in one transaction, its start and its result together. Storing the start first
        buys nothing here: the call takes milliseconds, and a worker that dies during it has it
        run again whatever was stored. `persist` makes one try (a local activity cannot wait out
        an outage); the workflow then moves the call to the regular activity."""
        key = f"{params.turn_id}:{params.tool_call_id}"

        async def whole(db: AsyncSession) -> tuple[list[Event], ToolOutcome]:
            begun = await self._begin(db, params, store=False)
            if isinstance(begun, ToolOutcome):
                return [], begun
            finished = await self._run(params, begun, None)
            return await self._store_result(db, params, begun, finished)

        stored, outcome = await persist(self.deps.db, whole, what=f"{key}:short")
        await events.publish_all(self.deps.bus, stored)
        return outcome

    async def _run(self, params: ToolInput, begun: _Begun, kept: KeptToolResult | None) -> KeptToolResult:
        """The call's result: an earlier attempt's kept one, its denial, or the tool run now."""
        if kept is not None:
            return kept
        if begun.denial is not None:
            # Not run: a person (or the approval timeout) denied it, or it is a client-side call
            # whose result did not come in time.
            status: ToolStatus = "timeout" if params.client_timeout_s is not None else "denied"
            return KeptToolResult(status=status, result=None, error=begun.denial)
        status, result, error = await self._execute(
            begun.call, begun.capability_ids, begun.capability_configs, begun.ctx, begun.mcp
        )
        return KeptToolResult(status=status, result=result, error=error)

    async def _begin(
        self, db: AsyncSession, params: ToolInput, *, store: bool = True
    ) -> _Begun | ToolOutcome:
        """The first transaction: the call and what it runs with, and its start stored. A
        ToolOutcome instead when there is nothing to run (stored already, or the session is gone).
        With `store=False` only the reads: the start's events come back unstored and uncommitted."""
        session_id = uuid.UUID(params.session_id)
        key = f"{params.turn_id}:{params.tool_call_id}"
        batch = EventBatch(session_id, {"turn_id": params.turn_id})
        results = await _stored_results(db, session_id, key, params.tool_call_id)
        if (existing := results.get(f"{key}:result")) is not None:
            return ToolOutcome(tool_call_id=params.tool_call_id, status=existing)
        reply = await db.get(Message, uuid.UUID(params.message_id))
        found = await sessions.with_agent(db, session_id)
        if reply is None or found is None:
            return ToolOutcome(tool_call_id=params.tool_call_id, status="error")  # session deleted
        session, agent = found
        call = next(
            p
            for p in content_from_json(reply.content)
            if isinstance(p, ToolCallPart) and p.id == params.tool_call_id
        )
        capability_ids, capability_configs = sessions.capabilities_of(session, agent)
        mcp = await mcp_servers.specs_for(db, agent.owner_id, capability_ids, self.deps.secrets)
        denial = _denial(params.approval)
        if params.client_timeout_s is not None:
            # A client-side call nobody answered in time: its result says so; nothing runs here.
            denial = client_tools.timeout_error(params.client_timeout_s)
        # Unstored, they are stored after the call: with the time they happen (now), not then.
        at = None if store else utcnow()
        if (approval := params.approval) is not None:
            resolved = ev.ToolApprovalResolved(
                tool_call_id=approval.tool_call_id,
                decision=approval.decision,
                reason=approval.reason,
                decided_by=approval.decided_by,
                user_id=approval.user_id,
                tool_name=call.name,
            )
            batch.add(resolved, f"{key}:tool.approval_resolved", ts=at)
        if denial is None:
            batch.add(ev.ToolCallStarted(tool_call=call), f"{key}:tool.call_started", ts=at)
        if store:
            if not await batch.store(db):
                return ToolOutcome(tool_call_id=params.tool_call_id, status="error")  # session deleted
            await db.commit()
        return _Begun(
            stored=batch.stored,
            call=call,
            capability_ids=capability_ids,
            capability_configs=capability_configs,
            mcp=mcp,
            denial=denial,
            turn_input=(reply.metadata_ or {}).get("input_message_id"),
            unstored=None if store else batch,
            ctx=ToolContext(
                session_id=session_id,
                agent_id=agent.id,
                knowledge_search=knowledge.searcher(
                    self.deps.db, ModelAccess(self.deps.settings, self.deps.secrets), agent.owner_id
                ),
            ),
        )

    async def _store_result(
        self, db: AsyncSession, params: ToolInput, begun: _Begun, finished: KeptToolResult
    ) -> tuple[list[Event], ToolOutcome]:
        """The second transaction: the result as a tool message, with `tool.call_completed` (a
        local call's only one: its start's unstored events go in first)."""
        session_id = uuid.UUID(params.session_id)
        key = f"{params.turn_id}:{params.tool_call_id}"
        call, status, result, error = begun.call, finished.status, finished.result, finished.error
        # A local call's start goes in with its result, before it (its sequence numbers too).
        batch = begun.unstored or EventBatch(session_id, {"turn_id": params.turn_id})
        # Takes the result's number first: that locks the session row, so what an earlier or a
        # racing attempt stored is seen below (an early return gives the number back).
        sequence = await events.take_sequence(db, session_id, "last_message_sequence")
        if sequence is None:
            return [], ToolOutcome(tool_call_id=params.tool_call_id, status="error")  # session deleted
        found = await _stored_results(db, session_id, key, call.id)
        if (existing := found.get(f"{key}:result")) is not None:
            return [], ToolOutcome(tool_call_id=params.tool_call_id, status=existing)
        if f"synthetic-result:{call.id}" in found:
            # Cancelled or given up on, and already answered "interrupted": keep that answer,
            # so the call never has two results.
            return [], ToolOutcome(tool_call_id=params.tool_call_id, status="cancelled")
        _, completed = await conversation.add_tool_result(
            db,
            session_id,
            call,
            key=key,
            status=status,
            result=result,
            error=error,
            input_message_id=begun.turn_input,
            sequence=sequence,
        )
        batch.add(completed, f"{key}:tool.call_completed")
        values = None
        if params.client_timeout_s is not None and not await client_tools.unanswered(
            db, session_id, params.turn_id
        ):
            # The last client-side call of the reply has its answer: the turn no longer waits.
            values = {"status": "active"}
        await batch.store(db, values=values)
        await db.commit()
        return batch.stored, ToolOutcome(tool_call_id=params.tool_call_id, status=status)

    async def _execute(
        self,
        call: ToolCallPart,
        capability_ids: list[str],
        capability_configs: dict[str, Any],
        ctx: ToolContext,
        mcp: registry.Extra | None = None,
    ) -> tuple[ToolStatus, Any, str | None]:
        found = registry.find_tool(capability_ids, call.name, mcp)
        if found is None:
            return "error", None, f"unknown tool {call.name!r}: the agent has no capability that provides it"
        tool, capability = found
        timeout_s = capability.timeout_s
        try:
            config = capability.parse_config(capability_configs.get(capability.id))
        except msgspec.ValidationError as exc:  # stored before a capability changed its config type
            return "error", None, f"the agent's configuration of {capability.id} is no longer valid: {exc}"
        network = NetPolicy(allow_loopback=self.deps.settings.outbound_allow_loopback)
        ctx = dataclasses.replace(ctx, config=config, network=network, db=self.deps.db)
        try:
            arguments = tool.parse(call.arguments)
        except ToolError as exc:
            return "error", None, str(exc)
        work: asyncio.Future[Any] = asyncio.ensure_future(tool.handler(arguments, ctx))
        try:
            # Heartbeats while the tool runs, so a cancel reaches us and a dead worker is noticed.
            async with heartbeating():
                done, _ = await asyncio.wait({work}, timeout=timeout_s)
            if not done:
                work.cancel()
                return "timeout", None, f"the tool did not finish within {timeout_s:g} s"
            return _passed_on(work.result())
        except asyncio.CancelledError:
            work.cancel()
            raise
        except ToolError as exc:
            return "error", None, str(exc)
        except Exception as exc:  # a tool's bug is the model's information, not the loop's end
            return "error", None, f"the tool failed: {type(exc).__name__}: {exc}"


def _passed_on(value: Any) -> tuple[ToolStatus, Any, str | None]:
    """A tool's return value as the result stored and passed on (JSON data, `json_value`), or an
    error result saying why it cannot be: a value JSON cannot hold, or one too large."""
    try:
        result = json_value(value)
    except TypeError as exc:
        return "error", None, f"the tool returned a value that is not JSON data: {exc}"
    size = len(result_json(result))
    if size > RESULT_MAX_CHARS:
        return (
            "error",
            None,
            f"the tool's result is too large to pass on: {size} characters of JSON, "
            f"at most {RESULT_MAX_CHARS}",
        )
    return "success", result, None


def _denial(approval: ApprovalDecision | None) -> str | None:
    """The tool result a denied call gets instead of running (None: it runs)."""
    if approval is None or approval.decision == "approve":
        return None
    if approval.decided_by == "timeout":
        return f"not run: {approval.reason or 'nobody approved this tool call in time'}"
    reason = f": {approval.reason}" if approval.reason else " (no reason given)"
    return f"not run: the user denied this tool call{reason}"


async def _stored_results(
    db: AsyncSession, session_id: uuid.UUID, key: str, call_id: str
) -> dict[str, ToolStatus]:
    """The call's stored results, by idempotency key: this step's own (`{key}:result`) and a
    synthetic "interrupted" one (`synthetic-result:{call_id}`), with their status."""
    rows = await db.execute(
        select(Message.idempotency_key, Message.metadata_).where(
            Message.session_id == session_id,
            Message.idempotency_key.in_([f"{key}:result", f"synthetic-result:{call_id}"]),
        )
    )
    found: dict[str, ToolStatus] = {}
    for idempotency_key, metadata in rows:
        found[idempotency_key] = (metadata or {}).get("status", "success")
    return found
