"""Client-side tools: the agent's and the session's `tools`, declared to the model beside the
capability tools. A call to one is not run here: the reply stores `tool.call_requested`, the turn
waits (session status `waitingfortoolresults`), and the client answers with `POST .../tool-results`,
which stores the result (the tool message and `tool.call_completed`, exactly once) and hands it to
the turn's workflow as the `deliver_tool_results` update."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
import redis.asyncio as redis
import structlog
from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from core.db.models import Event, Message, Session
from core.errors import Conflict, InvalidInput, NotFound
from core.identity import Identity
from core.schemas import events as ev
from core.schemas.capabilities import ToolDefinition
from core.schemas.content import ToolCallPart, json_value
from core.schemas.turns import (
    ClientToolResult,
    SessionLoop,
    ToolOutcome,
    ToolResultsAccepted,
    ToolResultsDelivered,
    ToolStatus,
)
from services import conversation, events, sessions

log = structlog.get_logger("everloop.client_tools")

REQUESTED = ev.type_of(ev.ToolCallRequested)
WAITING = "waitingfortoolresults"
# What the LLM APIs accept as a function name (OpenAI's rule, the strictest).
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}


def declared(
    agent_tools: Iterable[Any], session_tools: Iterable[Any], taken: Iterable[str] = ()
) -> dict[str, ToolDefinition]:
    """The client-side tools a turn offers, by name: the session's, then the agent's (a session's
    tool of the same name wins), leaving out names in `taken` (the capability tools: the agent's
    own configuration wins) and anything that is not a client-side tool definition (the API checks
    what it stores; this reads rows defensively, as the model must never get a broken schema)."""
    found: dict[str, ToolDefinition] = {}
    skip = set(taken)
    for item in [*session_tools, *agent_tools]:
        if not isinstance(item, dict) or item.get("type", "client_side") != "client_side":
            continue
        name, parameters = item.get("name"), item.get("parameters")
        if not isinstance(name, str) or not _NAME.match(name) or name in skip or name in found:
            continue
        description = item.get("description")
        found[name] = ToolDefinition(
            name=name,
            description=description if isinstance(description, str) else "",
            parameters=parameters if isinstance(parameters, dict) else _NO_ARGUMENTS,
        )
    return found


def timeout_error(timeout_s: float) -> str:
    """The error result of a client-side call whose result did not come in time."""
    return f"no result: the client did not answer this tool call within {timeout_s:g} s"


def _digest(result: ClientToolResult) -> str:
    """What makes two submissions of one call's result the same (key order aside)."""
    body = msgspec.json.encode({"result": result.result, "error": result.error}, order="sorted")
    return hashlib.sha256(body).hexdigest()


class _Requested(msgspec.Struct, kw_only=True, frozen=True):
    """A client-side call as its `tool.call_requested` stored it, with its turn."""

    call: ToolCallPart
    turn_id: str
    input_message_id: str | None

    @property
    def key(self) -> str:
        return f"{self.turn_id}:{self.call.id}"


async def _requested(db: AsyncSession, session_id: uuid.UUID, ids: list[str]) -> dict[str, _Requested]:
    """The session's client-side calls among `ids`, by id."""
    rows = await db.execute(
        select(Event.data, Event.context)
        .where(
            Event.session_id == session_id,
            Event.type == REQUESTED,
            or_(*(Event.data["tool_calls"].contains([{"id": i}]) for i in ids)),
        )
        # A provider may use an id again in a later turn: the latest call under it is the one.
        .order_by(Event.sequence)
    )
    found: dict[str, _Requested] = {}
    for data, context in rows:
        payload = ev.from_data(REQUESTED, data)
        assert isinstance(payload, ev.ToolCallRequested)
        for call in payload.tool_calls:
            if call.id in ids:
                found[call.id] = _Requested(
                    call=call,
                    turn_id=str((context or {}).get("turn_id")),
                    input_message_id=(context or {}).get("input_message_id"),
                )
    return found


async def _results(
    db: AsyncSession, session_id: uuid.UUID, calls: Iterable[_Requested]
) -> dict[str, Message]:
    """The stored result messages of these calls, by call id: the turn's own (`{key}:result`, the
    client's or the timeout's) or the synthetic one a later turn gave a call left open (its key
    names no turn: it counts when it belongs to the call's turn)."""
    calls = list(calls)
    keys = {f"{c.key}:result": c for c in calls}
    keys |= {f"synthetic-result:{c.call.id}": c for c in calls}
    if not keys:
        return {}
    rows = await db.execute(
        select(Message).where(Message.session_id == session_id, Message.idempotency_key.in_(list(keys)))
    )
    found: dict[str, Message] = {}
    for message in rows.scalars():
        call = keys[str(message.idempotency_key)]
        synthetic = str(message.idempotency_key).startswith("synthetic-result:")
        if synthetic and (message.metadata_ or {}).get("input_message_id") != call.input_message_id:
            continue
        found[call.call.id] = message
    return found


async def unanswered(db: AsyncSession, session_id: uuid.UUID, turn_id: str) -> list[str]:
    """The client-side calls of the turn still without a result (in the caller's transaction)."""
    rows = await db.execute(
        select(Event.data, Event.context).where(
            Event.session_id == session_id,
            Event.type == REQUESTED,
            Event.context["turn_id"].astext == turn_id,
        )
    )
    calls = []
    for data, context in rows:
        payload = ev.from_data(REQUESTED, data)
        assert isinstance(payload, ev.ToolCallRequested)
        calls += [
            _Requested(call=c, turn_id=turn_id, input_message_id=(context or {}).get("input_message_id"))
            for c in payload.tool_calls
        ]
    answered = await _results(db, session_id, calls)
    return [c.call.id for c in calls if c.call.id not in answered]


async def _ended(db: AsyncSession, session_id: uuid.UUID, turn_ids: set[str]) -> bool:
    found = await db.execute(
        select(Event.id)
        .where(
            Event.session_id == session_id,
            Event.type.in_(ev.TURN_ENDS),
            Event.context["turn_id"].astext.in_(list(turn_ids)),
        )
        .limit(1)
    )
    return found.first() is not None


def _storable(error: str | None) -> str | None:
    """A client's error text as PostgreSQL's jsonb can hold it (no NUL, no lone surrogate)."""
    if error is None:
        return None
    text: str = json_value(error)
    return text.replace("\x00", "\ufffd")


def _status(result: ClientToolResult) -> ToolStatus:
    return "error" if result.error is not None else "success"


async def submit(
    db: AsyncSession,
    who: Identity,
    agent_id: uuid.UUID | None,
    session_id: uuid.UUID,
    results: list[ClientToolResult],
    *,
    bus: redis.Redis,
    temporal: Callable[[], Awaitable[Client]],
) -> ToolResultsAccepted:
    """Stores the client's results of client-side tool calls and hands them to the waiting turn.

    404 for a call id the session never asked the client for; 400 for the same id twice. A result
    already stored for a call is accepted again if it is the same (a retried request), and a 409 if
    it differs (or the call was answered by its timeout or closed with its turn). New results need a
    turn that waits: else a 409 saying the session "is not waiting for tool results" (the words
    Everruns' SDK looks for). The results are stored first, in one transaction with their events;
    then the workflow gets their ids and statuses (a request retried after that step failed sends
    them again: nothing is stored twice)."""
    await sessions.get(db, who, agent_id, session_id)
    ids = [r.tool_call_id for r in results]
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise InvalidInput(f"tool call {twice} is answered more than once", field="tool_results")
    requested = await _requested(db, session_id, ids)
    if missing := [i for i in ids if i not in requested]:
        raise NotFound(f"no client-side tool call {missing[0]} was requested in this session")
    # Under the session row's lock: a result the turn's timeout stores at the same moment (or a
    # racing request) is either committed and seen below, or waits for this transaction.
    if not await events.lock_session(db, session_id):
        raise NotFound(f"session {session_id} not found")
    status = (await db.execute(select(Session.status).where(Session.id == session_id))).scalar_one()
    stored = await _results(db, session_id, requested.values())
    new: list[ClientToolResult] = []
    outcomes: list[ToolOutcome] = []
    turn_of: dict[str, str] = {}  # each answered call's turn, which the delivery names
    for result in results:
        existing = stored.get(result.tool_call_id)
        if existing is None:
            new.append(result)
            continue
        metadata = existing.metadata_ or {}
        if metadata.get("client_digest") != _digest(result):
            why = "by its timeout" if metadata.get("status") == "timeout" else "with another result"
            if existing.idempotency_key == f"synthetic-result:{result.tool_call_id}":
                why = "when its turn ended"
            raise Conflict(f"tool call {result.tool_call_id} was already answered {why}")
        outcomes.append(
            ToolOutcome(tool_call_id=result.tool_call_id, status=metadata.get("status", "success"))
        )
        turn_of[result.tool_call_id] = requested[result.tool_call_id].turn_id
    written: list[Event] = []
    if new:
        turns = {requested[r.tool_call_id].turn_id for r in new}
        if status != WAITING or await _ended(db, session_id, turns):
            raise Conflict(f"Session is not waiting for tool results (current status: {status})")
        by_turn: dict[str, list[events.NewEvent]] = {}
        contexts: dict[str, dict[str, Any]] = {}
        for result in new:
            call = requested[result.tool_call_id]
            _, completed = await conversation.add_tool_result(
                db,
                session_id,
                call.call,
                key=call.key,
                status=_status(result),
                result=json_value(result.result),
                error=_storable(result.error),
                input_message_id=call.input_message_id,
                metadata={"client_digest": _digest(result)},
            )
            contexts[call.turn_id] = {"turn_id": call.turn_id, "input_message_id": call.input_message_id}
            by_turn.setdefault(call.turn_id, []).append(
                events.NewEvent(completed, f"{call.key}:tool.call_completed")
            )
            outcomes.append(ToolOutcome(tool_call_id=call.call.id, status=_status(result)))
            turn_of[call.call.id] = call.turn_id
        for turn_id, pending in by_turn.items():
            if not await unanswered(db, session_id, turn_id):
                status = "active"  # the last call the turn waited for: it goes on
            done = await events.append_many(
                db, session_id, pending, context=contexts[turn_id], values={"status": status}
            )
            written += done or []
        await db.commit()
        await events.publish_all(bus, written)
    client = await temporal()
    for turn_id in dict.fromkeys(turn_of.values()):
        mine = [o for o in outcomes if turn_of[o.tool_call_id] == turn_id]
        await deliver(client, session_id, turn_id, mine, stored_now=bool(new))
    return ToolResultsAccepted(accepted=len(results), status=status)


async def deliver(
    client: Client, session_id: uuid.UUID, turn_id: str, outcomes: list[ToolOutcome], *, stored_now: bool
) -> None:
    """Tells the session's workflow which calls of turn `turn_id` have their results (sent again
    for a repeated request: the workflow takes each call's first and ignores the rest, and ignores
    a delivery for a turn it no longer runs)."""
    handle = client.get_workflow_handle(SessionLoop.workflow_id(session_id))
    delivered = ToolResultsDelivered(outcomes=outcomes, turn_id=turn_id)
    try:
        await handle.execute_update(SessionLoop.DELIVER_TOOL_RESULTS, delivered, result_type=int)
    except RPCError as exc:
        if exc.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise
        # The workflow has ended (terminated, or idle long after a repeated request): the results
        # are stored; a turn left open is closed by the sweeper.
        if stored_now:
            log.warning(
                "client tool results stored, but the session's workflow has ended", session_id=str(session_id)
            )


# Results the API stored, in turns still open: `submit` stores a result, commits, then tells the
# workflow; an API killed in between (or a Temporal call that failed there) leaves the turn waiting
# for a result it has, until CLIENT_TOOL_TIMEOUT (a day by default) gives it "no result". Everruns'
# SDK does not retry such a request, so the workers' sweeper hands these on (`hand_on`).
_STORED_IN_OPEN_TURNS = text(
    """
    SELECT t.session_id, t.context ->> 'turn_id', m.idempotency_key, m.metadata ->> 'status'
    FROM events t
    JOIN messages m ON m.session_id = t.session_id
    WHERE t.type = 'turn.started'
      AND t.ts > now() - make_interval(secs => :horizon)
      AND m.role = 'tool_result'
      AND m.metadata ->> 'client_digest' IS NOT NULL
      AND m.created_at < now() - make_interval(secs => :grace)
      AND starts_with(m.idempotency_key, (t.context ->> 'turn_id') || ':')
      AND NOT EXISTS (
        SELECT 1 FROM events e
        WHERE e.session_id = t.session_id AND e.type IN ('turn.completed', 'turn.failed', 'turn.cancelled')
          AND e.context ->> 'turn_id' = t.context ->> 'turn_id'
      )
    ORDER BY t.ts
    LIMIT 500
    """
)
# CLIENT_TOOL_TIMEOUT's largest value: no turn waits for a client longer.
STORED_HORIZON = timedelta(days=30)
_QUERY_TIMEOUT = timedelta(seconds=5)


@dataclass(frozen=True)
class StoredResults:
    """The client's results stored in one open turn (ids and statuses)."""

    session_id: uuid.UUID
    turn_id: str
    outcomes: tuple[ToolOutcome, ...]


async def stored_in_open_turns(db: AsyncSession, grace: timedelta) -> list[StoredResults]:
    """The client's results stored at least `grace` ago in turns that have not ended, by turn."""
    rows = await db.execute(
        _STORED_IN_OPEN_TURNS,
        {"grace": grace.total_seconds(), "horizon": STORED_HORIZON.total_seconds()},
    )
    found: dict[tuple[uuid.UUID, str], list[ToolOutcome]] = {}
    for session_id, turn_id, key, status in rows:
        # The key is `{turn}:{call}:result` (the call's `_Requested.key`): a turn id has no colon.
        call_id = str(key)[len(turn_id) + 1 : -len(":result")]
        found.setdefault((session_id, turn_id), []).append(
            ToolOutcome(tool_call_id=call_id, status=status or "success")
        )
    return [StoredResults(s, t, tuple(o)) for (s, t), o in found.items()]


async def hand_on(client: Client, stored: StoredResults) -> int:
    """Delivers the stored results the turn's workflow still waits for (asked first, so a result
    it has is not sent again: each delivery is an update in the workflow's history); how many."""
    handle = client.get_workflow_handle(SessionLoop.workflow_id(stored.session_id))
    try:
        current = await handle.query(SessionLoop.CURRENT_TURN, rpc_timeout=_QUERY_TIMEOUT)
        if current != stored.turn_id:
            return 0  # the workflow is gone or has moved on: the stranded-turn sweep closes the turn
        pending = await handle.query(
            SessionLoop.PENDING_TOOL_RESULTS, result_type=list[str], rpc_timeout=_QUERY_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return 0
        raise
    due = [o for o in stored.outcomes if o.tool_call_id in set(pending)]
    if due:
        await deliver(client, stored.session_id, stored.turn_id, due, stored_now=False)
        log.warning(
            "handed on client tool results the workflow had not been told of",
            session_id=str(stored.session_id),
            turn_id=stored.turn_id,
            count=len(due),
        )
    return len(due)
