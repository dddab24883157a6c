"""Replays with per-span mutations (seed 001's replay, issue 14; docs/replay.md).

A replay run is a row of `replays` (kind `mutations`) and a durable workflow (`replay-{id}`). The
POST checks the request and plans in one transaction: one diff per mutated span (its input as
recorded, the input with the mutation applied, its recorded output) and, for each mutated LLM span
that can be re-executed, the model to call (one the caller may use). The workflow re-executes those
spans through the caller's providers (activities/replay.py) and stores each answer under the replay
and span as soon as it is back (`store_output`: first writer wins, so a retried step never calls the
model again once an answer is stored), then writes the re-run as a new trace (`finish`).

Nothing else is executed: tool spans and unmutated spans keep their recorded outputs, so a replay
never repeats a side effect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from capabilities import registry
from core import temporal
from core.db.models import Agent, Event, LlmModel, LlmProvider, Message, Session
from core.db.replays import Replay
from core.db.traces import Span, Trace
from core.errors import Forbidden, InvalidInput, NotFound
from core.identity import Identity
from core.schemas import replays as schema
from core.schemas.replays import CALL_PARAMS, MAX_MUTATIONS, MUTATION_KEYS, ReplayLoop
from core.schemas.traces import SpanWrite
from services import conversation, llm, model_names, trace_queries, traces

KIND = "mutations"
NOT_AN_LLM_SPAN = (
    "a {kind} span is not re-executed: its recorded output is reused (a replay never repeats a side effect)"
)
NO_MESSAGES = "the span's input has no messages to send to a model"
UNSTARTED = "the replay's workflow could not be started; send the request again"
HISTORY_GONE = "the span's conversation is no longer stored (its session or messages were deleted)"
ROLES = ("system", "developer", "user", "assistant", "tool")
# What a re-executed call's messages may carry. Parts: text and images only, whose URLs are checked
# before the call (activities/replay.py); a `file`, `input_audio`, `video_url` or `document` part
# can hold a URL some providers fetch, so a mutation with one is refused and a recorded one dropped.
CONTENT_PARTS = ("text", "image_url")
# A message's keys sent on (any other, recorded or mutated, is dropped: it could carry a URL too).
MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


# ------------------------------------------------------------------------------------ the request


def check_mutations(raw: Any) -> dict[str, dict[str, Any]]:
    """The mutations, each key and type checked: a 400 names `mutations.<span id>[.<key>]`."""
    if not isinstance(raw, dict) or not raw:
        raise InvalidInput("mutations: at least one span's mutation is required", field="mutations")
    if len(raw) > MAX_MUTATIONS:
        # Each mutated span may be one model call: a bound on what one request spends.
        raise InvalidInput(f"mutations: at most {MAX_MUTATIONS} spans per replay", field="mutations")
    out: dict[str, dict[str, Any]] = {}
    for span_id, changes in raw.items():
        where = f"mutations.{span_id}"
        if not isinstance(changes, dict) or not changes:
            raise InvalidInput(f"{where}: an object of at least one change is required", field=where)
        for key, value in changes.items():
            check_value(f"{where}.{key}", key, value)
        out[span_id] = dict(changes)
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_value(field: str, key: str, value: Any) -> None:
    def bad(what: str) -> InvalidInput:
        return InvalidInput(f"{field}: {what}", field=field)

    if key not in MUTATION_KEYS:
        raise bad(f"not a mutation key (one of {', '.join(MUTATION_KEYS)})")
    if key == "model" and not (isinstance(value, str) and value.strip()):
        raise bad("the name (model_id) or id of one of your LLM models")
    if key == "system_prompt" and not isinstance(value, str):
        raise bad("a string")
    if key == "temperature" and not (_number(value) and 0 <= value <= 2):
        raise bad("a number from 0 to 2")
    if key == "top_p" and not (_number(value) and 0 <= value <= 1):
        raise bad("a number from 0 to 1")
    if key in ("presence_penalty", "frequency_penalty") and not (_number(value) and -2 <= value <= 2):
        raise bad("a number from -2 to 2")
    if key == "max_tokens" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise bad("a whole number of at least 1")
    if key == "seed" and not (isinstance(value, int) and not isinstance(value, bool)):
        raise bad("a whole number")
    if key == "stop" and not (
        isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))
    ):
        raise bad("a string or a list of strings")
    if key == "messages":
        if not isinstance(value, list) or not value:
            raise bad("a non-empty list of chat messages ({role, content})")
        for i, message in enumerate(value):
            if not isinstance(message, dict):
                raise InvalidInput(f"{field}[{i}]: a chat message object", field=f"{field}[{i}]")
            if message.get("role") not in ROLES:
                where = f"{field}[{i}].role"
                raise InvalidInput(f"{where}: one of {', '.join(ROLES)}", field=where)
            if not _content_allowed(message.get("content")):
                where = f"{field}[{i}].content"
                raise InvalidInput(
                    f"{where}: a string, or a list of parts of type {' or '.join(CONTENT_PARTS)} "
                    '(an image as {"url": ...})',
                    field=where,
                )


def _part_allowed(part: Any) -> bool:
    if not isinstance(part, dict) or part.get("type") not in CONTENT_PARTS:
        return False
    if part["type"] == "text":
        return isinstance(part.get("text"), str)
    image = part.get("image_url")
    return isinstance(image.get("url") if isinstance(image, dict) else image, str)


def _content_allowed(content: Any) -> bool:
    if content is None or isinstance(content, str):
        return True
    return isinstance(content, list) and all(_part_allowed(p) for p in content)


# ------------------------------------------------------------------------------------- the call


@dataclass(frozen=True)
class Call:
    """What a re-executed span sends: the model's rows, the chat messages, the tools, the
    parameters (only those the mutation sets)."""

    model: LlmModel
    provider: LlmProvider
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    params: dict[str, Any]


async def _recorded_model(db: AsyncSession, owner_id: uuid.UUID, span: Span) -> LlmModel | None:
    """The model a span was recorded with: an agent turn's exact model row (its reply's metadata),
    else the span's model name among the owner's models."""
    if span.source_message_id is not None:
        message = await db.get(Message, span.source_message_id)
        recorded = (message.metadata_ or {}).get("model_id") if message is not None else None
        if (
            isinstance(recorded, str)
            and (found := await model_names.find_model(db, owner_id, recorded)) is not None
        ):
            return found
    return await model_names.find_model(db, owner_id, span.model) if span.model else None


def _chat_message(given: dict[str, Any]) -> dict[str, Any]:
    """A recorded or mutated message as the chat-completions API takes it, with only what may be
    sent (MESSAGE_KEYS; content parts of CONTENT_PARTS, others dropped); an OpenTelemetry GenAI
    message (`parts`) with its text parts joined."""
    message = {k: v for k, v in given.items() if k in MESSAGE_KEYS}
    if "content" not in given and "parts" in given:
        parts: list[Any] = given["parts"] if isinstance(given.get("parts"), list) else []
        text_of = [p.get("content") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
        message["content"] = "".join(t for t in text_of if isinstance(t, str))
    elif isinstance(message.get("content"), list):
        message["content"] = [p for p in message["content"] if _part_allowed(p)]
    elif not _content_allowed(message.get("content")):
        message["content"] = None
    return message


def _is_chat(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in value)
    )


def _is_history(value: Any) -> bool:
    """An agent turn's `llm.generation` input: references to stored messages, not their text."""
    return _is_chat(value) and all("message_id" in m and "content" not in m for m in value)


def _tool_definitions(given: Any) -> list[dict[str, Any]]:
    """The tools offered with the call: an ingested span's chat-completions tools as recorded; an
    agent turn's summaries with each built-in tool's parameters (a tool no built-in capability
    has, an MCP server's or a client's, is offered with open parameters)."""
    if not isinstance(given, list):
        return []
    if all(isinstance(t, dict) and isinstance(t.get("function"), dict) for t in given):
        return list(given)
    everything = [c.id for c in registry.all_capabilities()]
    out = []
    for summary in given:
        if not isinstance(summary, dict) or not isinstance(summary.get("name"), str):
            continue
        found = registry.find_tool(everything, summary["name"])
        parameters = found[0].definition().parameters if found else {"type": "object", "properties": {}}
        description = summary.get("description") or (found[0].definition().description if found else "")
        out.append(
            {
                "type": "function",
                "function": {"name": summary["name"], "description": description, "parameters": parameters},
            }
        )
    return out


async def _history(
    db: AsyncSession, owner_id: uuid.UUID, span: Span, given: list[dict[str, Any]], system_prompt: Any
) -> list[dict[str, Any]] | str:
    """An agent turn's conversation, read back from the messages its `llm.generation` refers to.
    Only a span whose source event this server wrote (an agent turn's) is followed, and only to
    messages of that event's session, an agent of `owner_id`'s: an ingested span's input is whatever
    the client sent, and could name another account's messages."""
    if span.source_event_id is None:
        return NO_MESSAGES
    try:
        ids = [uuid.UUID(str(m["message_id"])) for m in given]
    except ValueError:
        return NO_MESSAGES
    session_id = await db.scalar(
        select(Event.session_id)
        .join(Session, Session.id == Event.session_id)
        .join(Agent, Agent.id == Session.agent_id)
        .where(Event.id == span.source_event_id, Agent.owner_id == owner_id)
    )
    if session_id is None:
        return HISTORY_GONE
    query = select(Message).where(Message.id.in_(ids), Message.session_id == session_id)
    found = {m.id: m for m in (await db.execute(query)).scalars()}
    if any(i not in found for i in ids):
        return HISTORY_GONE
    return conversation.to_llm_messages(
        system_prompt if isinstance(system_prompt, str) else "", [found[i] for i in ids]
    )


async def _messages(
    db: AsyncSession, owner_id: uuid.UUID, span: Span, content: Any, mutation: dict[str, Any]
) -> list[dict[str, Any]] | str:
    """The chat messages a span's call sends with its mutation applied, or why there are none."""
    given: Any = content.get("messages") if isinstance(content, dict) else content
    system_prompt = content.get("system_prompt") if isinstance(content, dict) else None
    if "messages" in mutation:
        messages = [_chat_message(m) for m in mutation["messages"]]
    elif _is_history(given):
        history = await _history(db, owner_id, span, given, system_prompt)
        if isinstance(history, str):
            return history
        messages = history
        system_prompt = None  # in the messages now
    elif _is_chat(given):
        messages = [_chat_message(m) for m in given]
    else:
        return NO_MESSAGES
    if "system_prompt" in mutation:
        system_prompt = mutation["system_prompt"]
        messages = [m for m in messages if m.get("role") != "system"]
    if isinstance(system_prompt, str) and system_prompt:
        messages = [{"role": "system", "content": system_prompt}, *messages]
    return messages


async def _call(
    db: AsyncSession, owner_id: uuid.UUID, span: Span, content: Any, mutation: dict[str, Any]
) -> Call | str:
    """What re-executing the span sends, or why it cannot be re-executed."""
    if span.kind != "llm":
        return NOT_AN_LLM_SPAN.format(kind=span.kind)
    if "model" in mutation:
        model = await model_names.find_model(db, owner_id, mutation["model"])
        if model is None:
            return f"no model you may use is named {mutation['model']!r} (a model's model_id or its id)"
    else:
        model = await _recorded_model(db, owner_id, span)
        if model is None:
            named = f"its model {span.model!r}" if span.model else "the span names no model, and"
            return f"{named} is none of the models you may use; mutate `model` to pick one"
    if not llm.healthy(model):
        return f"model {model.model_id!r} is not ready (it or its provider is inactive, or it has no key)"
    messages = await _messages(db, owner_id, span, content, mutation)
    if isinstance(messages, str):
        return messages
    tools = _tool_definitions(content.get("tools") if isinstance(content, dict) else None)
    params: dict[str, Any] = {k: mutation[k] for k in CALL_PARAMS if k in mutation}
    return Call(model=model, provider=model.provider, messages=messages, tools=tools, params=params)


def image_urls(messages: list[dict[str, Any]]) -> list[str]:
    """The image URLs a call's messages would send (not inline `data:` images), each once: checked
    before the call as a turn's are, since a provider may have this server fetch them."""
    found: list[str] = []
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str) and not url.startswith("data:") and url not in found:
                found.append(url)
    return found


def _mutated_input(original: Any, mutation: dict[str, Any]) -> dict[str, Any]:
    if isinstance(original, dict):
        base = original
    elif isinstance(original, list):
        base = {"messages": original}
    else:
        base = {} if original is None else {"input": original}
    return {**base, **mutation}


# ------------------------------------------------------------------------------------ the POST


async def _spans(db: AsyncSession, trace_pk: uuid.UUID) -> list[Span]:
    query = select(Span).where(Span.trace_pk == trace_pk).order_by(Span.start_time.nulls_last(), Span.span_id)
    return list((await db.execute(query)).scalars())


async def create(db: AsyncSession, who: Identity, trace_id: str, data: schema.ReplayRequest) -> Replay:
    """Checks the request, plans the run and stores it (status `pending`), committed: the caller
    starts its workflow."""
    if who.project_id is not None:
        # A replay calls the account's models: a project key ingests and reads, it does not spend.
        raise Forbidden("a project key may not run a replay: it calls the account's models")
    mutations = check_mutations(data.mutations)
    trace = await trace_queries.get_trace(db, who, trace_id)
    return await store_run(db, trace, mutations, who.email)


async def store_run(
    db: AsyncSession,
    trace: Trace,
    mutations: dict[str, dict[str, Any]],
    created_by: str | None,
    extra: dict[str, Any] | None = None,
) -> Replay:
    """Plans a run of `trace` with checked `mutations` (a span's may be empty: re-executed as
    recorded) and stores it, committed. `extra` joins its config (a fork of an app's trace keeps its
    `modifications` and `fork_from_step` there)."""
    spans = await _spans(db, trace.id)
    by_id = {s.span_id: s for s in spans}
    for span_id in mutations:
        if span_id not in by_id:
            where = f"mutations.{span_id}"
            raise InvalidInput(f"{where}: the trace has no span {span_id!r}", field=where)
    mutated = [s for s in spans if s.span_id in mutations]
    contents = await traces.span_contents(db, mutated)
    diffs: list[dict[str, Any]] = []
    plan: dict[str, dict[str, str]] = {}
    for span in mutated:
        original_input, original_output = contents[span.id]
        mutation = mutations[span.span_id]
        call = await _call(db, trace.owner_id, span, original_input, mutation)
        diff = schema.SpanDiff(
            span_id=span.span_id,
            span_name=span.name,
            original_input=original_input,
            mutated_input=_mutated_input(original_input, mutation),
            original_output=original_output,
            reason=call if isinstance(call, str) else None,
        )
        diffs.append(msgspec.to_builtins(diff))
        if not isinstance(call, str):
            plan[span.span_id] = {"model_pk": str(call.model.id)}
    replay = Replay(
        owner_id=trace.owner_id,
        project_id=trace.project_id,
        trace_row_id=trace.id,
        original_trace_id=trace.trace_id,
        kind=KIND,
        status="pending",
        config={"mutations": mutations, **(extra or {})},
        created_by=created_by,
        total_steps=len(plan),
        result={"diffs": diffs, "plan": plan, "outputs": {}},
    )
    db.add(replay)
    await db.commit()
    return replay


async def mark_unstarted(db: AsyncSession, replay_id: uuid.UUID, error: str) -> bool:
    """A run whose workflow could not be started: failed, saying why (a new POST tries again).
    Only while it is `pending`: a workflow that started after all has made it `running` first,
    and a workflow that finds it `failed` plans nothing (`plan`), so the two never both happen.
    True when this marked it."""
    marked = await db.execute(
        update(Replay)
        .where(Replay.id == replay_id, Replay.status == "pending")
        .values(status="failed", error=error, completed_at=func.now())
    )
    await db.commit()
    return bool(getattr(marked, "rowcount", 0))


async def workflow_exists(client: Client, replay_id: uuid.UUID) -> bool:
    """Whether Temporal has the run's workflow. Raises when Temporal cannot tell."""
    return await temporal.workflow_exists(client, ReplayLoop.workflow_id(replay_id))


async def settle_unstarted(db: AsyncSession, client: Client | None, replay_id: uuid.UUID) -> bool:
    """After a start that failed: a start whose answer was lost (a timeout after Temporal took it)
    left the workflow running, so it is asked first and, if it exists, left alone (failing the row
    would have the client send again and pay twice). Else the run is failed. True when failed."""
    if client is not None:
        with contextlib.suppress(Exception):  # Temporal cannot tell either: failed (see mark_unstarted)
            if await workflow_exists(client, replay_id):
                return False
    return await mark_unstarted(db, replay_id, UNSTARTED)


_PENDING = text(
    """
    SELECT id FROM replays
    WHERE kind = :kind AND status = 'pending'
      AND created_at < now() - make_interval(secs => :grace)
      AND created_at > now() - make_interval(secs => :horizon)
    ORDER BY created_at
    LIMIT 500
    """
)


async def start_pending(
    db: AsyncSession, client: Client, task_queue: str, grace: timedelta, horizon: timedelta
) -> int:
    """The sweeper's part (everloop/sweeper.py): starts the workflow of every run still `pending`
    after `grace` (the API stored it and died before starting it, or its start failed in a way it
    could not tell). A run whose workflow exists already is left to it (one workflow id per run).
    Returns how many it started."""
    rows = (
        await db.execute(
            _PENDING, {"kind": KIND, "grace": grace.total_seconds(), "horizon": horizon.total_seconds()}
        )
    ).scalars()
    ids = list(rows)
    await db.commit()
    started_now = 0
    for replay_id in ids:
        try:
            await start(client, task_queue, replay_id)
        except WorkflowAlreadyStartedError:
            continue
        started_now += 1
    return started_now


# ------------------------------------------------------------------------------------ the reads


async def get_replay(db: AsyncSession, who: Identity, trace_id: str, replay_id: uuid.UUID) -> Replay:
    """A replay of the caller's trace `trace_id` (a project key: of its project); else 404."""
    query = select(Replay).where(
        Replay.id == replay_id,
        Replay.owner_id == who.user_id,
        Replay.original_trace_id == trace_id,
        Replay.kind == KIND,
    )
    if who.project_id is not None:
        query = query.where(Replay.project_id == who.project_id)
    found: Replay | None = await db.scalar(query.execution_options(populate_existing=True))
    if found is None:
        raise NotFound("replay not found")
    return found


def diffs_of(replay: Replay) -> list[schema.SpanDiff]:
    """The plan's diffs with each stored answer (`mutated_output`) and each failure put in."""
    result = replay.result or {}
    outputs: dict[str, Any] = result.get("outputs") or {}
    failures: dict[str, str] = result.get("failures") or {}
    out = []
    for given in result.get("diffs") or []:
        diff = msgspec.convert(given, schema.SpanDiff)
        stored = outputs.get(diff.span_id)
        if stored is not None:
            diff = msgspec.structs.replace(diff, mutated_output=stored["output"], reexecuted=True)
        elif diff.span_id in failures:
            diff = msgspec.structs.replace(
                diff, reason=f"the re-executed call failed: {failures[diff.span_id]}"
            )
        out.append(diff)
    return out


def mutations_of(replay: Replay) -> dict[str, Any]:
    mutations = (replay.config or {}).get("mutations")
    return mutations if isinstance(mutations, dict) else {}


def started(replay: Replay) -> schema.ReplayStarted:
    return schema.ReplayStarted(
        original_trace_id=replay.original_trace_id,
        mutations=mutations_of(replay),
        diffs=diffs_of(replay),
        replay_run_id=replay.id,
        status=replay.status,
        result_trace_id=replay.result_trace_id,
        error=replay.error,
    )


def run_of(replay: Replay) -> schema.ReplayRun:
    return schema.ReplayRun(
        id=replay.id,
        original_trace_id=replay.original_trace_id,
        kind=replay.kind,
        status=replay.status,
        created_by=replay.created_by,
        config=replay.config,
        result_trace_id=replay.result_trace_id,
        created_at=replay.created_at,
        started_at=replay.started_at,
        completed_at=replay.completed_at,
        error=replay.error,
    )


def diff_of(replay: Replay) -> schema.ReplayDiff:
    return schema.ReplayDiff(
        original_trace_id=replay.original_trace_id,
        mutations=mutations_of(replay),
        diffs=diffs_of(replay),
        status=replay.status,
    )


# ------------------------------------------------------------------------------ the workflow's steps


class ReplayGone(Exception):
    """The replay's row is gone (its account or project was deleted): nothing left to do."""


async def _replay(db: AsyncSession, replay_id: uuid.UUID) -> Replay:
    found = await db.get(Replay, replay_id, populate_existing=True)
    if found is None:
        raise ReplayGone(f"replay {replay_id}")
    return found


async def plan(db: AsyncSession, replay_id: uuid.UUID) -> schema.ReplayPlan:
    """The run starts: `running`, and the spans still to re-execute (those without a stored
    answer), in the trace's order."""
    # One statement: the API's `mark_unstarted` moves it from `pending` too, and only one wins.
    await db.execute(
        update(Replay)
        .where(Replay.id == replay_id, Replay.status == "pending")
        .values(status="running", started_at=func.now())
    )
    await db.commit()
    replay = await _replay(db, replay_id)
    if replay.status != "running":
        # Failed before it started (the API could not tell that its start went through, and the
        # client was told to send again): nothing is called; `finish` leaves the row as it is.
        return schema.ReplayPlan(span_ids=[])
    result = replay.result or {}
    planned: dict[str, Any] = result.get("plan") or {}
    outputs: dict[str, Any] = result.get("outputs") or {}
    ordered = [d["span_id"] for d in result.get("diffs") or [] if d["span_id"] in planned]
    return schema.ReplayPlan(span_ids=[s for s in ordered if s not in outputs])


async def prepare_call(db: AsyncSession, replay_id: uuid.UUID, span_id: str) -> Call | None:
    """What re-executing the span sends, read again from the store (payloads carry ids only); None
    when its answer is stored already (an earlier attempt got it: the model is not called twice).
    InvalidInput when the span cannot be re-executed any more (its trace, messages or model gone)."""
    # Only this span's keys of the run's JSON, not the whole of it (every diff, every answer) once
    # per span.
    row = (
        await db.execute(
            select(
                Replay.owner_id,
                Replay.trace_row_id,
                Replay.result["outputs"][span_id].is_not(None),
                Replay.result["plan"][span_id],
                Replay.config["mutations"][span_id],
            ).where(Replay.id == replay_id)
        )
    ).first()
    if row is None:
        raise ReplayGone(f"replay {replay_id}")
    owner_id, trace_row_id, answered, planned, mutated = row
    if answered:
        return None
    if not isinstance(planned, dict):
        raise InvalidInput(f"span {span_id!r} is not planned for re-execution")
    if trace_row_id is None:
        raise InvalidInput("the original trace was deleted")
    span = await db.scalar(select(Span).where(Span.trace_pk == trace_row_id, Span.span_id == span_id))
    if span is None:
        raise InvalidInput(f"the original trace no longer has span {span_id!r}")
    content, _ = await traces.span_content(db, span)
    mutation = dict(mutated) if isinstance(mutated, dict) else {}
    # The model chosen when the run was planned, whatever its name resolves to by now.
    mutation["model"] = planned["model_pk"]
    call = await _call(db, owner_id, span, content, mutation)
    if isinstance(call, str):
        raise InvalidInput(call)
    return call


async def store_output(db: AsyncSession, replay_id: uuid.UUID, span_id: str, output: dict[str, Any]) -> bool:
    """Stores a re-executed span's answer under the replay and span, unless one is stored already
    (the first attempt's answer wins). True when this call stored it. One statement: the row's lock
    orders parallel spans' writes, each adding its own key."""
    stored = await db.execute(
        text(
            """
            UPDATE replays SET
                result = jsonb_set(result, ARRAY['outputs', :span_id], CAST(:output AS jsonb)),
                current_step = current_step + 1,
                updated_at = now()
            WHERE id = :replay_id AND (result -> 'outputs' -> :span_id) IS NULL
            """
        ),
        {"replay_id": replay_id, "span_id": span_id, "output": json.dumps(output)},
    )
    await db.commit()
    return bool(getattr(stored, "rowcount", 0))


def output_record(
    call: Call,
    *,
    text_out: str,
    tool_calls: list[dict[str, Any]],
    input_tokens: int,
    output_tokens: int,
    cost: Decimal,
    duration_ms: int,
    finish_reason: str | None,
) -> dict[str, Any]:
    """What is stored of a re-executed call: its answer as an assistant message, and its usage."""
    message: dict[str, Any] = {"role": "assistant", "content": text_out}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "output": message,
        "model": call.model.model_id,
        "model_pk": str(call.model.id),
        "provider": call.provider.provider_type,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost": str(cost),
        "duration_ms": duration_ms,
        "finish_reason": finish_reason,
    }


async def finish(db: AsyncSession, replay_id: uuid.UUID, failures: dict[str, str]) -> schema.ReplayOutcome:
    """Writes the re-run as a new trace in the original's project (`replay-{id}`): the original's
    spans, each re-executed one with its new answer, tokens and cost; then the outcome. Idempotent:
    a retried finish writes the same trace again."""
    replay = await _replay(db, replay_id)
    if replay.status in ("completed", "failed") and replay.completed_at is not None:
        return schema.ReplayOutcome(status=replay.status, result_trace_id=replay.result_trace_id)
    result = dict(replay.result or {})
    outputs: dict[str, Any] = result.get("outputs") or {}
    trace_id: str | None = None
    original = await db.get(Trace, replay.trace_row_id) if replay.trace_row_id else None
    if original is not None:
        trace_id = ReplayLoop.result_trace_id(replay.id)
        diffs = {d["span_id"]: d for d in result.get("diffs") or []}
        spans = await _spans(db, original.id)
        written = [
            _copied(s, outputs.get(s.span_id), diffs.get(s.span_id), failures.get(s.span_id)) for s in spans
        ]
        key = await traces.ensure_trace(
            db,
            replay.owner_id,
            original.project_id,
            trace_id,
            name=original.name,
            status=original.status,
            external_id=original.external_id,
            user_id=original.user_id,
            metadata_={
                **(original.metadata_ or {}),
                "replay_of": original.trace_id,
                "replay_id": str(replay.id),
                "mutations": mutations_of(replay),
            },
        )
        await traces.upsert_spans(db, replay.owner_id, key, written)
    missing = [s for s in (result.get("plan") or {}) if s not in outputs and s not in failures]
    errors = [f"span {s}: {m}" for s, m in failures.items()]
    if original is None:
        errors.insert(0, "the original trace was deleted before the replay finished")
    status = "failed" if errors or missing else "completed"
    result["failures"] = failures
    await db.execute(
        update(Replay)
        .where(Replay.id == replay.id)
        .values(
            status=status,
            result=result,
            result_trace_id=trace_id,
            error="; ".join(errors) or None,
            completed_at=func.now(),
        )
    )
    await db.commit()
    return schema.ReplayOutcome(status=status, result_trace_id=trace_id)


def _copied(
    span: Span, output: dict[str, Any] | None, diff: dict[str, Any] | None, failure: str | None
) -> SpanWrite:
    """An original span in the result trace: as recorded (content referenced, not copied), or, once
    re-executed, with the mutated input and the new answer, tokens and cost."""
    copy = traces.as_write(span)
    if failure is not None:
        return msgspec.structs.replace(copy, metadata={**copy.metadata, "replay_error": failure})
    if output is None or diff is None:
        return copy
    start = span.start_time or datetime.now(UTC)
    return msgspec.structs.replace(
        copy,
        status="ok",
        error=None,
        input=diff.get("mutated_input"),
        output=output["output"],
        metadata={**copy.metadata, "replayed": True, "original_model": span.model},
        start_time=start,
        end_time=start + timedelta(milliseconds=int(output.get("duration_ms") or 0)),
        model=output.get("model"),
        provider=output.get("provider"),
        input_tokens=output.get("input_tokens"),
        output_tokens=output.get("output_tokens"),
        cost=Decimal(str(output.get("cost") or 0)),
        source_event_id=None,
        source_message_id=None,
    )


# ------------------------------------------------------------------------------ starting the run


async def start(client: Client, task_queue: str, replay_id: uuid.UUID) -> WorkflowHandle[Any, Any]:
    """Starts the run's workflow (`replay-{id}`: one per run)."""
    return await client.start_workflow(
        ReplayLoop.WORKFLOW,
        schema.ReplayInput(replay_id=str(replay_id)),
        id=ReplayLoop.workflow_id(replay_id),
        task_queue=task_queue,
    )


async def wait(handle: WorkflowHandle[Any, Any], wait_s: float) -> None:
    """Waits for the run up to `wait_s` (REPLAY_WAIT_S). A run still going then is answered as
    `running` (GET .../diff gives the rest later); a failed one, or a wait Temporal cut short, is
    answered from the run's row all the same: its status and error say where it is."""
    if wait_s > 0:
        with contextlib.suppress(TimeoutError, WorkflowFailureError, RPCError):
            await asyncio.wait_for(handle.result(), wait_s)
