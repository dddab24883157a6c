"""Opswald's replays: a recorded agent turn forked at a step and run again by the real agent loop
(docs/replay.md, "Forks").

A fork is a new session of the same agent holding a copy of the original session's conversation up
to the fork step: every earlier turn, the turn's user message, and the turn's replies and tool
results before the fork step. Its workflow is the ordinary session workflow, started with a
`ForkStart`: it answers the copied user message from the fork's reasoning step on, with the same
activities as a live turn, so the steps before the fork are never run again (their tool results are
the copies) and the original session is never touched. The replay's modifications are the fork
session's: its model, and the call parameters and system prompt its reasoning steps read here
(`overrides`). When the forked turn ends, `record_end` (in the same transaction as the turn's end
event) fills the replay's result."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core.db.models import Agent, Message, Replay, Session, Span, Trace
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceUnavailable
from core.identity import Identity
from core.ids import uuid7
from core.schemas import replays as schema
from core.schemas.replays import CALL_PARAMS, MAX_MUTATIONS, MUTATION_KEYS
from core.schemas.traces import CONTAINER_KINDS
from core.schemas.turns import (
    CONTROL_REFUSED,
    ForkStart,
    ReplayControl,
    ReplayState,
    SessionInput,
    SessionLoop,
    TurnOutcome,
)
from services import conversation, model_names, replays, trace_queries, traces
from services.turn_traces import LLM_NAME, llm_span_id

log = structlog.get_logger("everloop.forks")

KIND = "fork"
MODES = ("auto", "interactive")
# What a fork may change: a 001 mutation's keys but the messages (a fork's messages are the
# recording's, up to the fork step).
MODIFICATION_KEYS = tuple(k for k in MUTATION_KEYS if k != "messages")
# The replay's status from its forked turn's outcome.
STATUS_OF: dict[str, str] = {"completed": "completed", "failed": "failed", "cancelled": "stopped"}
FINISHED = ("completed", "failed", "stopped")


@dataclass(frozen=True)
class Fork:
    """A stored fork: its replay row (kind `fork`, status `pending`), its session (a copy of the
    original's conversation up to the fork step) and how its workflow starts."""

    replay: Replay
    session_id: uuid.UUID
    agent_id: uuid.UUID
    start: ForkStart

    def workflow_input(self) -> SessionInput:
        """The forked session's workflow input (workflow id `SessionLoop.workflow_id(session_id)`)."""
        return SessionInput(
            session_id=str(self.session_id),
            agent_id=str(self.agent_id),
            pending=[self.start.message_id],
            fork=self.start,
        )


@dataclass(frozen=True)
class Overrides:
    """What a forked session's reasoning steps change: the call's parameters, the system prompt."""

    call_params: dict[str, Any]
    system_prompt: str | None


# ------------------------------------------------------------------------------------ the request


def check_modifications(raw: Any, field: str = "") -> dict[str, Any]:
    where = f"{field}modifications"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: an object of changes", field=where)
    for key, value in raw.items():
        if key not in MODIFICATION_KEYS:
            raise InvalidInput(
                f"{where}.{key}: not a modification (one of {', '.join(MODIFICATION_KEYS)})",
                field=f"{where}.{key}",
            )
        replays.check_value(f"{where}.{key}", key, value)
    return dict(raw)


async def _steps(db: AsyncSession, trace_pk: uuid.UUID) -> list[Span]:
    """The trace's steps as Opswald numbers them (`GET /v1/traces/{id}`): its spans that are not
    containers, in time order."""
    query = (
        select(Span)
        .where(Span.trace_pk == trace_pk, Span.kind.not_in(CONTAINER_KINDS))
        .order_by(Span.start_time.asc().nulls_last(), Span.created_at, Span.id)
    )
    return list((await db.execute(query)).scalars())


def _iteration(span: Span, turn_id: str) -> int | None:
    """The reasoning step a span is (`{turn}:llm:{n}`), or None."""
    prefix = llm_span_id(turn_id, "")
    if span.kind != "llm" or not span.span_id.startswith(prefix):
        return None
    tail = span.span_id[len(prefix) :]
    return int(tail) if tail.isdigit() else None


def _turn_of(m: Message) -> str | None:
    return conversation.turn_of(m)


def _reply_iteration(m: Message, turn_id: str) -> int | None:
    """The reasoning step an agent reply answered (its idempotency key `{turn}:{n}:reply`)."""
    key = m.idempotency_key or ""
    if m.role != "agent" or not key.startswith(f"{turn_id}:") or not key.endswith(":reply"):
        return None
    middle = key[len(turn_id) + 1 : -len(":reply")]
    return int(middle) if middle.isdigit() else None


def _call_ids(m: Message) -> set[str]:
    return {str(p.get("id")) for p in m.content if isinstance(p, dict) and p.get("type") == "tool_call"}


def _result_of(m: Message) -> str | None:
    for p in m.content:
        if isinstance(p, dict) and p.get("type") == "tool_result":
            return str(p.get("tool_call_id"))
    return None


def _copied(stored: list[Message], input_message: Message, turn_id: str, iteration: int) -> list[Message]:
    """The messages a fork at reasoning step `iteration` starts from, as `conversation.for_turn`
    reads them for that step: every earlier turn's user message and what it produced (wherever it
    was stored: a message queued behind a turn is stored before that turn's replies), the turn's
    user message, its replies to steps before `iteration` and their tool results. Later turns'
    messages are left out."""
    turn_key = str(input_message.id)
    earlier = {str(m.id) for m in stored if m.role == "user" and m.sequence < input_message.sequence}
    kept_calls: set[str] = set()
    out: list[Message] = []
    for m in stored:
        owner = _turn_of(m)
        if m.role == "user":
            if str(m.id) in earlier or m.id == input_message.id:
                out.append(m)
        elif owner in earlier or (owner is None and m.sequence < input_message.sequence):
            out.append(m)  # an earlier turn's (or one from before turns were recorded on messages)
        elif owner == turn_key:
            step = _reply_iteration(m, turn_id)
            if step is not None and step < iteration:
                kept_calls |= _call_ids(m)
                out.append(m)
            elif m.role == "tool_result" and _result_of(m) in kept_calls:
                out.append(m)
    return out


async def _turn_trace(
    db: AsyncSession, owner_id: uuid.UUID, trace: Trace, field: str
) -> tuple[Session, Message]:
    """The session and user message of an agent turn's trace; a 400 for any other trace."""
    not_a_turn = InvalidInput(
        f"{field}trace_id: only an agent's turn can be forked (this trace was sent by an app); "
        "replay its spans with POST /v1/traces/{trace_id}/replay",
        field=f"{field}trace_id",
    )
    if trace.agent_id is None or trace.session_id is None:
        raise not_a_turn
    root = await db.scalar(
        select(Span).where(Span.trace_pk == trace.id, Span.span_id == trace.trace_id, Span.kind == "agent")
    )
    if root is None or root.source_message_id is None:
        raise not_a_turn
    try:
        session_pk = uuid.UUID(trace.session_id)
    except ValueError:
        raise not_a_turn from None
    found = await db.execute(
        select(Session, Message)
        .join(Agent, Agent.id == Session.agent_id)
        .join(Message, Message.session_id == Session.id)
        .where(Session.id == session_pk, Agent.owner_id == owner_id, Message.id == root.source_message_id)
    )
    row = found.first()
    if row is None:
        raise InvalidInput(
            f"{field}trace_id: the turn's session or message is no longer stored (deleted since)",
            field=f"{field}trace_id",
        )
    return row[0], row[1]


async def create(
    db: AsyncSession,
    *,
    owner_id: uuid.UUID,
    trace: Trace,
    modifications: dict[str, Any],
    fork_from_step: int | None,
    mode: str,
    created_by: str | None,
    field: str = "",
) -> Fork:
    """Checks the modifications (a 400 InvalidInput names `{field}modifications.<key>`) and the fork
    step (`{field}fork_from_step`; None: the turn's first step, i.e. the whole turn again), copies
    the conversation and stores the replay row and the forked session; not committed (the caller
    commits). The trace must be an agent turn's (else InvalidInput naming `{field}trace_id`)."""
    modifications = check_modifications(modifications, field)
    if mode not in MODES:
        raise InvalidInput(f"{field}mode: one of {', '.join(MODES)}", field=f"{field}mode")
    original, input_message = await _turn_trace(db, owner_id, trace, field)
    turn_id = trace.trace_id
    steps = await _steps(db, trace.id)
    where = f"{field}fork_from_step"
    number = fork_from_step or 1
    if number > len(steps):
        raise InvalidInput(f"{where}: the trace has {len(steps)} steps", field=where)
    iteration = _iteration(steps[number - 1], turn_id)
    if iteration is None:
        reasoning = [n for n, s in enumerate(steps, start=1) if _iteration(s, turn_id) is not None]
        raise InvalidInput(
            f"{where}: step {number} is a tool call ({steps[number - 1].name}); a fork starts at a "
            f"reasoning step ({LLM_NAME}): one of {', '.join(map(str, reasoning))}",
            field=where,
        )
    model_pk: uuid.UUID | None = None
    if "model" in modifications:
        model = await model_names.find_model(db, owner_id, modifications["model"])
        if model is None:
            raise InvalidInput(
                f"{field}modifications.model: no model you may use is named {modifications['model']!r} "
                "(GET /v1/llm-models)",
                field=f"{field}modifications.model",
            )
        model_pk = model.id
    stored = await conversation.load(db, original.id)
    copies = _copied(stored, input_message, turn_id, iteration)
    replay = Replay(
        id=uuid7(),
        owner_id=owner_id,
        project_id=trace.project_id,
        trace_row_id=trace.id,
        original_trace_id=trace.trace_id,
        kind=KIND,
        mode=mode,
        status="pending",
        config={
            "modifications": modifications,
            "fork_from_step": number,
            "iteration": iteration,
            "original_session_id": str(original.id),
            "model_pk": str(model_pk) if model_pk else None,
        },
        created_by=created_by,
        current_step=number - 1,
        total_steps=len(steps),
    )
    db.add(replay)
    await db.flush()
    session = Session(
        id=uuid7(),
        agent_id=original.agent_id,
        title=f"Fork of {original.title or 'a session'} at step {number}",
        tags=list(original.tags),
        # The modified model is the session's, so every step (and later turn) of the fork uses it.
        model_id=model_pk or original.model_id,
        status="idle",
        tools=list(original.tools),
        capabilities=list(original.capabilities),
        locale=original.locale,
        parallel_tool_calls=original.parallel_tool_calls,
        last_message_sequence=len(copies),
        replay_id=replay.id,
    )
    db.add(session)
    await db.flush()
    new_ids = {m.id: uuid7() for m in copies}
    for sequence, m in enumerate(copies, start=1):
        metadata = dict(m.metadata_ or {})
        if (answered := metadata.get("input_message_id")) is not None:
            answered_id = _uuid(answered)
            mapped = new_ids.get(answered_id) if answered_id is not None else None
            metadata["input_message_id"] = str(mapped) if mapped else answered
        # A copy is never answered again (the sweeper's and the loop's scans for unanswered
        # messages leave it alone): only the fork's own turn answers its user message.
        metadata["copied_from"] = str(m.id)
        controls = m.controls
        if m.id == input_message.id and model_pk is not None and controls and controls.get("model_id"):
            controls = {**controls, "model_id": str(model_pk)}
        db.add(
            Message(
                id=new_ids[m.id],
                session_id=session.id,
                sequence=sequence,
                role=m.role,
                content=m.content,
                controls=controls,
                metadata_=metadata,
                tags=list(m.tags),
                idempotency_key=None,
            )
        )
    replay.session_id = session.id
    replay.config = {**replay.config, "message_id": str(new_ids[input_message.id])}
    await db.flush()
    start = ForkStart(
        replay_id=str(replay.id),
        message_id=str(new_ids[input_message.id]),
        iteration=iteration,
        step=number,
        interactive=mode == "interactive",
    )
    return Fork(replay=replay, session_id=session.id, agent_id=original.agent_id, start=start)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _fork_of(replay: Replay, agent_id: uuid.UUID) -> Fork:
    config = replay.config
    assert replay.session_id is not None
    return Fork(
        replay=replay,
        session_id=replay.session_id,
        agent_id=agent_id,
        start=ForkStart(
            replay_id=str(replay.id),
            message_id=str(config["message_id"]),
            iteration=int(config["iteration"]),
            step=int(config["fork_from_step"]),
            interactive=replay.mode == "interactive",
        ),
    )


async def load(db: AsyncSession, replay_id: uuid.UUID) -> Fork:
    """A stored fork, as `create` returned it (for an activity retried after it committed one)."""
    found = (
        await db.execute(
            select(Replay, Session.agent_id)
            .join(Session, Session.id == Replay.session_id)
            .where(Replay.id == replay_id, Replay.kind == KIND)
        )
    ).first()
    if found is None:
        raise NotFound("the fork's replay or its session is gone")
    return _fork_of(found[0], found[1])


# ------------------------------------------------------------------------------------ the HTTP side


async def _app_replay(
    db: AsyncSession, trace: Trace, data: schema.StartReplay, created_by: str | None, keyed: dict[str, Any]
) -> Replay:
    """An app's trace from a step on: its code is the app's, so what this server can run again is
    its LLM calls. Each LLM step from the fork step on is re-executed with the modifications (a span
    replay, docs/replay.md); the other steps keep their recordings."""
    modifications = check_modifications(data.modifications)
    if data.mode != "auto":
        raise InvalidInput(
            "mode: an app's trace replays in auto mode only (its LLM steps are re-executed one by one, "
            "not by a loop that could hold between them); interactive controls need an agent's turn",
            field="mode",
        )
    steps = await _steps(db, trace.id)
    number = data.fork_from_step or 1
    if number > len(steps):
        raise InvalidInput(f"fork_from_step: the trace has {len(steps)} steps", field="fork_from_step")
    llm = [(n, span) for n, span in enumerate(steps, start=1) if n >= number and span.kind == "llm"]
    if not llm:
        raise InvalidInput(
            f"fork_from_step: the trace has no LLM step from step {number} on: nothing to re-execute",
            field="fork_from_step",
        )
    if len(llm) > MAX_MUTATIONS:
        raise InvalidInput(
            f"fork_from_step: {len(llm)} LLM steps from step {number} on; at most {MAX_MUTATIONS} per replay",
            field="fork_from_step",
        )
    return await replays.store_run(
        db,
        trace,
        {span.span_id: dict(modifications) for _, span in llm},
        created_by,
        extra={
            "modifications": modifications,
            "fork_from_step": number,
            "steps": {span.span_id: {"step": n, "model": span.model} for n, span in llm},
            **keyed,
        },
    )


def may_run(who: Identity) -> None:
    if who.project_id is not None:
        # A fork calls the account's models: a project key ingests and reads, it does not spend.
        raise Forbidden("a project key may not run or control a replay: it calls the account's models")


async def start_replay(
    db: AsyncSession, who: Identity, data: schema.StartReplay, idempotency_key: str | None = None
) -> tuple[Fork | Replay, bool]:
    """`POST /v1/replays`: the caller's trace forked; committed, its workflow not started yet. An
    agent's turn gives a Fork; an app's trace a span replay (a Replay of kind `mutations`) of its
    LLM steps from the fork step on. With an `Idempotency-Key` seen before (for this account): the
    first request's replay, and True (nothing new is stored or run)."""
    may_run(who)
    trace = await trace_queries.get_trace(db, who, data.trace_id)
    if idempotency_key is not None:
        # One replay per key and account, exactly, under concurrency: the key's lock is held until
        # this transaction commits the new replay (which carries the key), so a racing request
        # waits and then finds it.
        await db.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"replay:{who.user_id}:{idempotency_key}"},
        )
        first = await db.scalar(
            select(Replay).where(
                Replay.owner_id == who.user_id, Replay.config["idempotency_key"].astext == idempotency_key
            )
        )
        if first is not None:
            await db.commit()
            return (await load(db, first.id) if first.kind == KIND else first), True
    keyed = {"idempotency_key": idempotency_key} if idempotency_key is not None else {}
    if trace.agent_id is None:
        return await _app_replay(db, trace, data, who.email, keyed), False
    fork = await create(
        db,
        owner_id=trace.owner_id,
        trace=trace,
        modifications=data.modifications or {},
        fork_from_step=data.fork_from_step,
        mode=data.mode,
        created_by=who.email,
    )
    fork.replay.config = {**fork.replay.config, **keyed}
    await db.commit()
    return fork, False


async def start(client: Client, task_queue: str, fork: Fork) -> None:
    """Starts the fork's session workflow (its id makes a second start harmless)."""
    await client.start_workflow(
        SessionLoop.WORKFLOW,
        fork.workflow_input(),
        id=SessionLoop.workflow_id(fork.session_id),
        task_queue=task_queue,
        # A fork's start is always its session's first run: a start racing one that has already
        # run the fork to its end must not run it again (later messages use signal-with-start).
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )


async def start_pending(
    db: AsyncSession, client: Client, task_queue: str, grace: timedelta, horizon: timedelta
) -> int:
    """The sweeper's part: starts the workflow of every fork still `pending` after `grace` (the API
    stored it and died before starting it). Returns how many it started."""
    ids = list(
        (
            await db.execute(
                select(Replay.id)
                .where(
                    Replay.kind == KIND,
                    Replay.status == "pending",
                    Replay.session_id.is_not(None),
                    Replay.created_at < func.now() - grace,
                    Replay.created_at > func.now() - horizon,
                )
                .order_by(Replay.created_at)
                .limit(500)
            )
        ).scalars()
    )
    started_now = 0
    for replay_id in ids:
        try:
            fork = await load(db, replay_id)
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await start(client, task_queue, fork)
                started_now += 1
            await mark_started(db, replay_id, paused=fork.start.interactive)
        except NotFound:
            # Its session was deleted before it started: nothing to run.
            await _fail(db, replay_id, "the fork's session was deleted before it started")
        except Exception as exc:  # one bad row must not stop the sweep (the next one retries it)
            await db.rollback()
            log.warning("fork not started", replay_id=str(replay_id), error=str(exc))
    return started_now


async def _fail(db: AsyncSession, replay_id: uuid.UUID, error: str) -> None:
    await db.execute(
        update(Replay)
        .where(Replay.id == replay_id, Replay.status.in_(("pending", "running", "paused")))
        .values(status="failed", error=error, completed_at=func.now())
    )
    await db.commit()


# A running fork is asked about (is its workflow still there?) at most this often.
STALE_RECHECK = timedelta(minutes=5)


async def settle_stranded(db: AsyncSession, client: Client, idle: timedelta = STALE_RECHECK) -> int:
    """The sweeper's part: a fork `running` or `paused` whose workflow has ended without its turn's
    end (terminated; its session deleted; a golden run's parent terminated with it) is `failed`,
    saying so, instead of holding forever. A fork is asked about once it has been `idle` without a
    change, and one found running is not asked about again for as long (`updated_at` marks the
    asking). Returns how many it failed."""
    rows = (
        await db.execute(
            select(Replay.id, Replay.session_id)
            .where(
                Replay.kind == KIND,
                Replay.status.in_(("running", "paused")),
                Replay.updated_at < func.now() - idle,
            )
            .order_by(Replay.updated_at)
            .limit(100)
        )
    ).all()
    await db.commit()
    failed = 0
    for replay_id, session_id in rows:
        if session_id is None:
            await _fail(db, replay_id, "the fork's session was deleted")
            failed += 1
            continue
        try:
            described = await client.get_workflow_handle(SessionLoop.workflow_id(session_id)).describe()
            running = described.status == WorkflowExecutionStatus.RUNNING
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                continue  # Temporal cannot tell: asked again next sweep
            running = False
        if running:
            await db.execute(update(Replay).where(Replay.id == replay_id).values(updated_at=func.now()))
            await db.commit()
            continue
        await _fail(db, replay_id, "the fork's workflow ended before its turn did (it was terminated)")
        failed += 1
    return failed


async def mark_started(db: AsyncSession, replay_id: uuid.UUID, paused: bool) -> None:
    await db.execute(
        update(Replay)
        .where(Replay.id == replay_id, Replay.status == "pending")
        .values(status="paused" if paused else "running", started_at=func.now())
    )
    await db.commit()


async def get_fork(db: AsyncSession, who: Identity, replay_id: uuid.UUID) -> Replay:
    """One of the caller's replays (any kind: `GET /v1/replays/{id}` shows 001's too); else 404."""
    query = select(Replay).where(Replay.id == replay_id, Replay.owner_id == who.user_id)
    if who.project_id is not None:
        query = query.where(Replay.project_id == who.project_id)
    found: Replay | None = await db.scalar(query.execution_options(populate_existing=True))
    if found is None:
        raise NotFound("replay not found")
    return found


async def list_replays(
    db: AsyncSession, who: Identity, limit: int, offset: int, trace_id: str | None
) -> tuple[list[Replay], int]:
    query = select(Replay).where(Replay.owner_id == who.user_id)
    if who.project_id is not None:
        query = query.where(Replay.project_id == who.project_id)
    if trace_id is not None:
        query = query.where(Replay.original_trace_id == trace_id)
    total = int(await db.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = await db.scalars(
        query.order_by(Replay.created_at.desc(), Replay.id.desc()).limit(limit).offset(offset)
    )
    return list(rows), total


def check_control(replay: Replay) -> None:
    if replay.kind != KIND:
        raise Conflict("only a fork (POST /v1/replays) has controls: a span replay runs to its end")
    if replay.status == "pending":
        raise Conflict("the replay has not started yet (it starts within a minute): send the control then")
    if replay.status in FINISHED:
        raise Conflict(f"the replay has {replay.status if replay.status != 'stopped' else 'been stopped'}")


async def record_control(db: AsyncSession, replay_id: uuid.UUID, state: ReplayState) -> None:
    """The state a control left the fork's workflow in, while the replay runs (a finished one keeps
    what its end stored)."""
    status = "stopped" if state.stopped else "paused" if state.holding_at is not None else "running"
    values: dict[str, Any] = {"current_step": state.current_step}
    if not state.stopped:
        values["status"] = status
    await db.execute(
        update(Replay)
        .where(Replay.id == replay_id, Replay.status.in_(("pending", "running", "paused")))
        .values(**values)
    )
    await db.commit()


def view(replay: Replay, base_url: str, live: ReplayState | None) -> schema.ReplayView:
    """Opswald's replay, with this server's additions (the fork's session and its result trace)."""
    status, current = replay.status, replay.current_step
    if live is not None and replay.status in ("pending", "running", "paused"):
        current = live.current_step
        status = "stopped" if live.stopped else "paused" if live.holding_at is not None else "running"
    done = replay.status in FINISHED
    return schema.ReplayView(
        replay_id=replay.id,
        trace_id=replay.original_trace_id,
        kind=replay.kind,
        mode=replay.mode,
        status=status,
        current_step=current,
        total_steps=replay.total_steps,
        fork_from_step=replay.config.get("fork_from_step"),
        modifications=replay.config.get("modifications", replay.config.get("mutations", {})),
        holding_at=live.holding_at if live is not None and not done else None,
        session_id=replay.session_id,
        result_trace_id=replay.result_trace_id,
        url=f"{base_url}/v1/replays/{replay.id}",
        created_at=replay.created_at,
        started_at=replay.started_at,
        completed_at=replay.completed_at,
        error=replay.error,
        result=_result(replay) if done else None,
    )


def _result(replay: Replay) -> schema.ReplayResult | None:
    if replay.kind == KIND:
        result = replay.result or {}
        return schema.ReplayResult(
            final_output=result.get("final_output"),
            total_cost=float(result.get("total_cost") or 0),
            duration_ms=int(result.get("duration_ms") or 0),
            changes_from_original=[schema.Change(**c) for c in result.get("changes_from_original", [])],
            outcome=result.get("outcome"),
        )
    steps: dict[str, dict[str, Any]] = replay.config.get("steps") or {}
    if not steps:
        return None  # a 001 span replay: its diffs are its result (GET /v1/traces/{id}/replay/{id}/diff)
    return _span_replay_result(replay, steps)


def _span_replay_result(replay: Replay, steps: dict[str, dict[str, Any]]) -> schema.ReplayResult:
    """An app trace's replay in Opswald's terms: the re-executed LLM steps' answers and costs, and
    per step the modifications and the answer that changed."""
    outputs: dict[str, Any] = (replay.result or {}).get("outputs") or {}
    changes: list[schema.Change] = []
    final: str | None = None
    cost = Decimal(0)
    for diff in sorted(replays.diffs_of(replay), key=lambda d: int(steps.get(d.span_id, {}).get("step", 0))):
        step = steps.get(diff.span_id, {})
        number = int(step.get("step", 0))
        for key, value in (replay.config.get("modifications") or {}).items():
            before = step.get("model") if key == "model" else _recorded(diff.original_input, key)
            changes.append(schema.Change(step=number, field=key, original=before, modified=value))
        if not diff.reexecuted:
            continue
        stored = outputs.get(diff.span_id) or {}
        cost += Decimal(str(stored.get("cost") or 0))
        answer = diff.mutated_output.get("content") if isinstance(diff.mutated_output, dict) else None
        final = answer if isinstance(answer, str) else final
        before_text = _text(diff.original_output)
        if before_text != answer:
            changes.append(schema.Change(step=number, field="output", original=before_text, modified=answer))
    duration = 0
    if replay.started_at is not None and replay.completed_at is not None:
        duration = int((replay.completed_at - replay.started_at).total_seconds() * 1000)
    return schema.ReplayResult(
        final_output=final,
        total_cost=float(cost),
        duration_ms=duration,
        changes_from_original=changes,
        outcome="completed" if replay.status == "completed" else "failed",
    )


def _recorded(given: Any, key: str) -> Any:
    return given.get(key) if isinstance(given, dict) else None


# ------------------------------------------------------------------------------------ the loop side


async def overrides(db: AsyncSession, session: Session) -> Overrides | None:
    """A forked session's changes to its reasoning steps (None for any other session)."""
    if session.replay_id is None:
        return None
    replay = await db.get(Replay, session.replay_id)
    if replay is None:
        return None
    given: dict[str, Any] = replay.config.get("modifications", {})
    prompt = given.get("system_prompt")
    return Overrides(
        call_params={k: given[k] for k in CALL_PARAMS if k in given},
        system_prompt=prompt if isinstance(prompt, str) else None,
    )


async def record_end(
    db: AsyncSession,
    session_id: uuid.UUID,
    turn_id: str,
    input_message_id: str,
    outcome: TurnOutcome,
    duration_ms: int,
    error: str | None,
) -> None:
    """In the forked turn's end transaction: the replay's result. Any other turn: nothing."""
    replay = await db.scalar(
        select(Replay)
        .join(Session, Session.replay_id == Replay.id)
        .where(Session.id == session_id, Replay.kind == KIND)
        .with_for_update(of=Replay)
    )
    if replay is None or replay.config.get("message_id") != input_message_id or replay.status in FINISHED:
        return
    new = await db.scalar(select(Trace).where(Trace.owner_id == replay.owner_id, Trace.trace_id == turn_id))
    original_steps = await _steps(db, replay.trace_row_id) if replay.trace_row_id else []
    new_steps = await _steps(db, new.id) if new is not None else []
    first = int(replay.config["fork_from_step"])
    contents = await traces.span_contents(db, [*original_steps, *new_steps])
    changes = _changes(replay, original_steps, new_steps, first, contents)
    final = await _final_output(db, session_id, turn_id)
    cost = sum((s.cost or Decimal(0) for s in new_steps), Decimal(0))
    replay.status = STATUS_OF[outcome]
    replay.current_step = first - 1 + len(new_steps)
    replay.total_steps = first - 1 + len(new_steps)
    replay.result_trace_id = turn_id if new is not None else None
    replay.completed_at = datetime.now(UTC)
    replay.error = error
    replay.result = {
        "final_output": final,
        "total_cost": float(cost),
        "duration_ms": duration_ms,
        "changes_from_original": changes,
        "outcome": outcome,
        "error": error,
    }
    if new is not None:
        # The fork's trace links to the original; analytics and drift leave it out (not traffic).
        new.metadata_ = {
            **new.metadata_,
            "replay_of": replay.original_trace_id,
            "replay_id": str(replay.id),
            "fork_from_step": first,
        }


async def _final_output(db: AsyncSession, session_id: uuid.UUID, turn_id: str) -> str | None:
    """The fork turn's last reply's text: its own replies only (`{turn}:{n}:reply`), not the copies
    of the original's before the fork step, nor a failure notice."""
    rows = await db.scalars(
        select(Message)
        .where(
            Message.session_id == session_id,
            Message.role == "agent",
            Message.idempotency_key.like(f"{turn_id}:%:reply"),
        )
        .order_by(Message.sequence.desc())
        .limit(1)
    )
    last = rows.first()
    if last is None:
        return None
    texts = [str(p.get("text")) for p in last.content if isinstance(p, dict) and p.get("type") == "text"]
    return "".join(texts) if texts else None


def _text(output: Any) -> Any:
    """The text of a recorded answer: an agent turn's `{text, tool_calls}`, a chat message's
    `content`, or the output as it is."""
    if isinstance(output, dict) and "text" in output:
        return output.get("text")
    if isinstance(output, dict) and isinstance(output.get("content"), str):
        return output["content"]
    return output


def _changes(
    replay: Replay,
    original: list[Span],
    forked: list[Span],
    first: int,
    contents: dict[uuid.UUID, tuple[Any, Any]],
) -> list[dict[str, Any]]:
    """Opswald's `changes_from_original`: the modifications at the fork step, then, step by step from
    the fork on, what differs (the step's kind and name, model, output), and steps only one run has."""
    out: list[dict[str, Any]] = []
    at_fork = original[first - 1] if len(original) >= first else None
    for key, value in (replay.config.get("modifications") or {}).items():
        before: Any = None
        if key == "model" and at_fork is not None:
            before = at_fork.model
        elif at_fork is not None and isinstance(recorded := contents.get(at_fork.id, (None, None))[0], dict):
            before = recorded.get(key)
        out.append({"step": first, "field": key, "original": before, "modified": value})
    for offset in range(max(len(original) - (first - 1), len(forked))):
        number = first + offset
        a = original[number - 1] if number - 1 < len(original) else None
        b = forked[offset] if offset < len(forked) else None
        if a is None or b is None:
            out.append(
                {
                    "step": number,
                    "field": "step",
                    "original": _describe(a),
                    "modified": _describe(b),
                }
            )
            continue
        for name, before, after in (
            ("type", a.kind, b.kind),
            ("name", a.name, b.name),
            ("model", a.model, b.model),
            (
                "output",
                _text(contents.get(a.id, (None, None))[1]),
                _text(contents.get(b.id, (None, None))[1]),
            ),
            (
                "tool_calls",
                _calls(contents.get(a.id, (None, None))[1]),
                _calls(contents.get(b.id, (None, None))[1]),
            ),
            ("status", a.status, b.status),
        ):
            if before != after:
                out.append({"step": number, "field": name, "original": before, "modified": after})
    return out


def _calls(output: Any) -> Any:
    """A reasoning step's tool calls without their ids (a provider names each run's calls anew):
    what was called, with what."""
    calls = output.get("tool_calls") if isinstance(output, dict) else None
    if not isinstance(calls, list):
        return None
    return [{"name": c.get("name"), "arguments": c.get("arguments")} for c in calls if isinstance(c, dict)]


def _describe(span: Span | None) -> dict[str, Any] | None:
    if span is None:
        return None
    return {"type": span.kind, "name": span.name}


# ------------------------------------------------------------------------------------ the controls

STATE_TIMEOUT = timedelta(seconds=3)
CONTROL_TIMEOUT = timedelta(seconds=10)


async def live_state(client: Client, replay: Replay) -> ReplayState | None:
    """Where a running fork is, asked of its workflow; None when it cannot tell (not started, done,
    or Temporal or the workers not answering: the row's values stand)."""
    if replay.kind != KIND or replay.session_id is None or replay.status in FINISHED:
        return None
    handle = client.get_workflow_handle(SessionLoop.workflow_id(replay.session_id))
    try:
        # A closed workflow still answers queries (from its history): a fork whose workflow ended
        # without its turn's end (terminated) must not look as if it still held.
        described = await handle.describe(rpc_timeout=STATE_TIMEOUT)
        if described.status != WorkflowExecutionStatus.RUNNING:
            return None
        state: ReplayState | None = await handle.query(
            SessionLoop.REPLAY_STATE,
            result_type=ReplayState | None,  # type: ignore[arg-type]
            rpc_timeout=STATE_TIMEOUT,
        )
    except Exception:
        return None
    return state


async def control(client: Client, replay: Replay, given: ReplayControl) -> ReplayState:
    """Sends a control to the fork's workflow; a Conflict says why it was refused."""
    check_control(replay)
    assert replay.session_id is not None
    if given.action == "jump" and given.step is None:
        raise InvalidInput("step: jump needs the step to go to", field="step")
    handle = client.get_workflow_handle(SessionLoop.workflow_id(replay.session_id))
    try:
        state: ReplayState = await handle.execute_update(
            SessionLoop.REPLAY_CONTROL, given, result_type=ReplayState, rpc_timeout=CONTROL_TIMEOUT
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == CONTROL_REFUSED:
            raise Conflict(cause.message) from None
        raise
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        # No worker took it in time (one was just killed, say). Temporal keeps the update, so it
        # may still apply when a worker comes: the client is told so, not that it failed.
        raise ServiceUnavailable(
            "no worker answered the control in time; it may still apply when one does: GET the replay"
        ) from None
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise Conflict("the replay's workflow is not running (it has finished)") from None
        raise
    return state
