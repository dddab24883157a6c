"""Sessions of an agent, and the messages posted to them."""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

import msgspec
from sqlalchemy import delete as delete_rows
from sqlalchemy import false, func, select
from sqlalchemy import update as update_rows  # `update` is this module's PATCH
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from capabilities import registry
from core.db.models import Agent, Event, Message, Replay, Session, Trace
from core.errors import Conflict, InvalidInput, NotFound
from core.identity import Identity
from core.net import NetPolicy, url_refusal
from core.schemas import sessions as schemas
from core.schemas.agents import GENERIC_HARNESS_ID, ClientTool
from core.schemas.capabilities import AgentCapabilityConfig, CapabilityItem
from core.schemas.content import (
    ImagePart,
    TextPart,
    ToolCall,
    ToolCallPart,
    ToolResult,
    ToolResultPart,
    content_from_json,
    content_to_json,
    result_value,
)
from core.schemas.events import TURN_ENDS, MessageUser, TurnStarted, type_of
from services import agents, conversation, events, initial_files
from services.common import changed_fields, page_of
from services.llm import check_model_exists

IMAGE_MAX_BYTES = 5 * 1024 * 1024
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# How long posting a message waits for the DNS answer of an image URL's host: past it the message
# is stored, and the turn checks the address again anyway.
IMAGE_DNS_TIMEOUT_S = 2.0


def organization_id(owner_id: uuid.UUID) -> str:
    """The organization Everruns' clients expect on a session: one per account, named after its
    owner (`org_` and the user id in hex, Everruns' id form), until organizations exist here."""
    return f"org_{owner_id.hex}"


def to_schema(row: Session, owner_id: uuid.UUID) -> schemas.Session:
    """A session as clients see it; `owner_id` is its agent's owner (the caller, past the owner
    check)."""
    return schemas.Session(
        id=row.id,
        agent_id=row.agent_id,
        harness_id=GENERIC_HARNESS_ID,
        organization_id=organization_id(owner_id),
        title=row.title,
        tags=row.tags,
        model_id=row.model_id,
        locale=row.locale,
        parallel_tool_calls=row.parallel_tool_calls,
        tools=[msgspec.convert(t, ClientTool) for t in row.tools],
        capabilities=[msgspec.convert(c, AgentCapabilityConfig) for c in row.capabilities],
        status=row.status,
        usage=schemas.Usage(
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            total_tokens=row.input_tokens + row.output_tokens,
            cost=float(row.cost),
        ),
        started_at=row.started_at,
        finished_at=row.finished_at,
        ended_at=row.ended_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def turn_opened() -> dict[str, Any]:
    """What a turn's opening sets on its session row, with its opening events (in their
    transaction): active, started (the first turn's start is kept), not finished."""
    return {
        "status": "active",
        "started_at": func.coalesce(Session.started_at, func.now()),
        "finished_at": None,
    }


async def record_turn_end(db: AsyncSession, session_id: uuid.UUID, stored: list[Event]) -> None:
    """Sets `finished_at` from a turn's stored end event (in the end's transaction), and
    `started_at` from its opening if the end stored that too (a turn that failed before its first
    step could) and no turn had started before. The times are the events' own, which a retried end
    finds stored rather than making anew: so a retry changes nothing."""
    ends = [e for e in stored if e.type in TURN_ENDS]
    if not ends:
        return
    values: dict[str, Any] = {"finished_at": ends[-1].ts}
    opened = [e.ts for e in stored if e.type == type_of(TurnStarted)]
    if opened:
        values["started_at"] = func.coalesce(Session.started_at, opened[0])
    await db.execute(update_rows(Session).where(Session.id == session_id).values(values))


def parallel_tool_calls(session: Session, agent: Agent) -> bool | None:
    """Whether the model may ask for several tool calls in one reply: the session's setting, else
    the agent's; None leaves it to the provider. The reason step passes it on as litellm's
    `parallel_tool_calls` whenever tools are offered."""
    return (
        session.parallel_tool_calls if session.parallel_tool_calls is not None else agent.parallel_tool_calls
    )


def require_active(agent: Agent) -> Agent:
    """The agent, unless it is archived: then its sessions are read-only (Conflict)."""
    if agent.status == "archived":
        raise Conflict(f"agent {agent.id} is archived: its sessions are read-only")
    return agent


async def _session_capabilities(
    db: AsyncSession, who: Identity, agent: Agent, items: list[CapabilityItem]
) -> tuple[list[dict[str, Any]], list[str]]:
    """A session's own capabilities (on top of its agent's), checked as an agent's are, in their
    stored form `[{ref, config}]`; and every capability id the session's turns then use."""
    if not items:
        return [], list(agent.capabilities)
    given = [item if isinstance(item, str) else (item.capability_id or "") for item in items]
    extra = await agents.mcp_capabilities(db, who, [*agent.capabilities, *given])
    ids, configs = agents.check_capabilities(items, extra=extra)
    union = [*agent.capabilities, *(i for i in ids if i not in agent.capabilities)]
    if conflicts := registry.tool_conflicts(union, extra):
        raise InvalidInput(
            "capabilities: a tool of these has the name of another of the agent's or the session's: "
            + "; ".join(conflicts),
            field="capabilities",
        )
    return [{"ref": i, "config": configs.get(i)} for i in ids], union


def capabilities_of(session: Session, agent: Agent) -> tuple[list[str], dict[str, Any]]:
    """The capabilities a session's turns use: the agent's, in order, then the session's own; and
    their configurations, where a session's configuration of a capability replaces the agent's
    (Everruns: session capabilities are additive to the agent's)."""
    ids = list(agent.capabilities)
    configs: dict[str, Any] = dict(agent.capability_configs or {})
    for item in session.capabilities or []:
        ref = item["ref"]
        if ref not in ids:
            ids.append(ref)
        if item.get("config") is not None:
            configs[ref] = item["config"]
    return ids, configs


async def create(
    db: AsyncSession, who: Identity, agent_id: uuid.UUID, data: schemas.CreateSession
) -> Session:
    """A new session on the caller's active agent, with the agent's and the request's starter files
    in its file tree (one transaction). Without a `model_id` it takes the agent's default model."""
    agent = require_active(await agents.get(db, who, agent_id))
    agents.check_harness(data.harness_id, data.harness_name)
    capabilities, ids = await _session_capabilities(db, who, agent, data.capabilities)
    await check_model_exists(db, who, data.model_id, "model_id")
    mcp = await agents.mcp_capabilities(db, who, ids)
    tools = agents.check_tools(data.tools, ids, mcp, beside=agent.tools)
    files = initial_files.merge(agent.initial_files, initial_files.check(data.initial_files or []))
    row = Session(
        agent_id=agent_id,
        title=data.title,
        tags=data.tags,
        model_id=data.model_id or agent.default_model_id,
        locale=data.locale,
        parallel_tool_calls=data.parallel_tool_calls,
        tools=tools,
        capabilities=capabilities,
    )
    db.add(row)
    await db.flush()
    await initial_files.write(db, row.id, files)
    await db.commit()
    return row


async def create_flat(db: AsyncSession, who: Identity, data: schemas.CreateFlatSession) -> Session:
    """`POST /v1/sessions`: the agent named by `agent_id` or `agent_name` (exactly one)."""
    if (data.agent_id is None) == (data.agent_name is None):
        raise InvalidInput(
            "agent_id: give agent_id or agent_name"
            + (", not both" if data.agent_id is not None else " (a session runs one of your agents)"),
            field="agent_id",
        )
    if data.agent_id is not None:
        agent_id = agents.parse_id(data.agent_id, "agent_id")
    else:
        assert data.agent_name is not None
        agent_id = (await agents.by_name(db, who, data.agent_name)).id
    return await create(db, who, agent_id, data)


async def get(db: AsyncSession, who: Identity, agent_id: uuid.UUID | None, session_id: uuid.UUID) -> Session:
    """A session of the caller's agent; anyone else's answers as if it did not exist. Without an
    agent id (the flat `/v1/sessions/{id}` routes) any of the caller's agents will do."""
    query = (
        select(Session)
        .join(Agent, Agent.id == Session.agent_id)
        .where(Session.id == session_id, Agent.owner_id == who.user_id)
    )
    if agent_id is not None:
        query = query.where(Session.agent_id == agent_id)
    row = (await db.execute(query)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"session {session_id} not found" + (f" for agent {agent_id}" if agent_id else ""))
    return row


async def list_(
    db: AsyncSession, who: Identity, agent_id: uuid.UUID, offset: int, limit: int
) -> tuple[list[Session], int]:
    await agents.get(db, who, agent_id)
    query = select(Session).where(Session.agent_id == agent_id).order_by(Session.id.desc())
    return await page_of(db, query, offset, limit)


async def list_all(
    db: AsyncSession,
    who: Identity,
    *,
    agent_id: uuid.UUID | None,
    search: str | None,
    offset: int,
    limit: int,
    user_id: str | None = None,
    active: bool | None = None,
) -> tuple[list[Session], int]:
    """The caller's sessions of all their agents (or of `agent_id`), newest first; `search` is a
    case-insensitive substring of the title. Opswald's filters: `user_id` (an agent session's user
    is its owner) and `active` (not ended)."""
    query = (
        select(Session)
        .join(Agent, Agent.id == Session.agent_id)
        .where(Agent.owner_id == who.user_id)
        .order_by(Session.id.desc())
    )
    if user_id is not None and user_id != str(who.user_id):
        query = query.where(false())
    if active is not None:
        query = query.where(Session.ended_at.is_(None) if active else Session.ended_at.is_not(None))
    if agent_id is not None:
        query = query.where(Session.agent_id == agent_id)
    if search:
        query = query.where(Session.title.ilike(agents.search_pattern(search)))
    return await page_of(db, query, offset, limit)


async def update(
    db: AsyncSession,
    who: Identity,
    agent_id: uuid.UUID | None,
    session_id: uuid.UUID,
    patch: schemas.UpdateSession,
) -> Session:
    row = await get(db, who, agent_id, session_id)
    values = changed_fields(patch)
    if "model_id" in values:
        await check_model_exists(db, who, values["model_id"], "model_id")
    for field, value in values.items():
        setattr(row, field, value)
    await db.commit()
    return row


async def delete(db: AsyncSession, who: Identity, agent_id: uuid.UUID | None, session_id: uuid.UUID) -> None:
    row = await get(db, who, agent_id, session_id)
    # Its turns' traces go too: their spans point at its events. The session row is locked first,
    # as a step that writes spans locks it (`events.append_many`), so the two never deadlock.
    await events.lock_session(db, row.id)
    await db.execute(
        delete_rows(Trace).where(Trace.agent_id == row.agent_id, Trace.session_id == str(row.id))
    )
    await db.delete(row)  # messages, events and files go with it (ON DELETE CASCADE)
    await db.commit()


# Messages


def message_to_schema(row: Message) -> schemas.Message:
    content = content_from_json(row.content)
    calls = [
        ToolCall(id=p.id, name=p.name, arguments=p.arguments) for p in content if isinstance(p, ToolCallPart)
    ]
    # `content` holds a result as Everruns sends it (its JSON as text); the convenience array, as the
    # v0.2 clients read it, the result itself.
    results = [
        ToolResult(tool_call_id=p.tool_call_id, result=result_value(p), error=p.error)
        for p in content
        if isinstance(p, ToolResultPart)
    ]
    return schemas.Message(
        id=row.id,
        session_id=row.session_id,
        sequence=row.sequence,
        role=row.role,
        content=content,
        controls=msgspec.convert(row.controls, schemas.Controls) if row.controls is not None else None,
        metadata=row.metadata_,
        tags=row.tags,
        created_at=row.created_at,
        tool_calls=calls or None,
        tool_results=results or None,
    )


def _check_user_content(parts: list[Any]) -> None:
    if not parts:
        raise InvalidInput("message.content: a message needs at least one part", field="message.content")
    for index, part in enumerate(parts):
        field = f"message.content[{index}]"
        if isinstance(part, TextPart):
            continue
        if not isinstance(part, ImagePart):
            raise InvalidInput(f"{field}: users may post only `text` and `image` parts", field=field)
        if (part.url is None) == (part.base64 is None):
            raise InvalidInput(f"{field}: an image has either `url` or `base64`", field=field)
        if part.url is not None and not part.url.startswith(("https://", "http://")):
            raise InvalidInput(f"{field}.url: must be an http(s) URL", field=f"{field}.url")
        if part.base64 is not None:
            if part.media_type not in IMAGE_MEDIA_TYPES:
                raise InvalidInput(
                    f"{field}.media_type: must be one of {', '.join(IMAGE_MEDIA_TYPES)}",
                    field=f"{field}.media_type",
                )
            # 4 base64 characters carry 3 bytes: refuse by length before decoding anything large.
            if len(part.base64) * 3 // 4 > IMAGE_MAX_BYTES + 3:
                raise InvalidInput(f"{field}.base64: the image is over 5 MB", field=f"{field}.base64")
            try:
                size = len(base64.b64decode(part.base64, validate=True))
            except (binascii.Error, ValueError):
                raise InvalidInput(f"{field}.base64: not valid base64", field=f"{field}.base64") from None
            if size > IMAGE_MAX_BYTES:
                raise InvalidInput(f"{field}.base64: the image is over 5 MB", field=f"{field}.base64")


async def _check_image_addresses(parts: list[Any], network: NetPolicy) -> None:
    """An image URL must be on a public internet address, as for `web_fetch`: the model provider
    may have this server fetch it (litellm does for some providers), or be a model server inside
    this network itself. Refused here when it plainly is not; the turn checks again (DNS changes)."""
    for index, part in enumerate(parts):
        if isinstance(part, ImagePart) and part.url is not None:
            reason = await url_refusal(part.url, network, dns_wait_s=IMAGE_DNS_TIMEOUT_S)
            if reason is not None:
                field = f"message.content[{index}].url"
                raise InvalidInput(
                    f"{field}: refused by this server: {reason} (an image must be on a public internet "
                    "address)",
                    field=field,
                )


def _same_request(row: Message, data: schemas.CreateMessage) -> bool:
    return (
        row.content == content_to_json(data.message.content)
        and row.controls == (msgspec.to_builtins(data.controls) if data.controls else None)
        and row.metadata_ == data.metadata
        and row.tags == data.tags
    )


async def _by_key(db: AsyncSession, session_id: uuid.UUID, key: str) -> Message | None:
    query = select(Message).where(Message.session_id == session_id, Message.idempotency_key == key)
    return (await db.execute(query)).scalar_one_or_none()


async def _fork_unstarted(db: AsyncSession, replay_id: uuid.UUID) -> bool:
    status = await db.scalar(select(Replay.status).where(Replay.id == replay_id))
    return status == "pending"


async def post_message(
    db: AsyncSession,
    who: Identity,
    agent_id: uuid.UUID,
    session_id: uuid.UUID,
    data: schemas.CreateMessage,
    idempotency_key: str | None,
    network: NetPolicy | None = None,
) -> tuple[Message, Event | None]:
    """Stores a user message and its `message.user` event in one transaction. Returns the message
    and the new event, or (first message, None) when the idempotency key was seen before."""
    session = await get(db, who, agent_id, session_id)
    require_active(await agents.get(db, who, agent_id))
    _check_user_content(data.message.content)
    await _check_image_addresses(data.message.content, network or NetPolicy())
    if data.controls is not None:
        await check_model_exists(db, who, data.controls.model_id, "controls.model_id")
    if idempotency_key is not None and (first := await _by_key(db, session_id, idempotency_key)):
        return _replayed(first, data)
    if session.replay_id is not None and await _fork_unstarted(db, session.replay_id):
        # A fork's session whose replay has not started: a message now would start an ordinary run
        # of its workflow, and the fork's own start (the one that answers the copied message from
        # the fork step) would find it taken.
        raise Conflict(
            "this session is a fork whose replay has not started yet; send the message once it has"
        )
    try:
        message = await conversation.add_message(
            db,
            session.id,
            "user",
            content_to_json(data.message.content),
            controls=msgspec.to_builtins(data.controls) if data.controls else None,
            metadata=data.metadata,
            tags=data.tags,
            idempotency_key=idempotency_key,
        )
    except IntegrityError:
        # The same key raced in from a concurrent retry, which committed first.
        await db.rollback()
        assert idempotency_key is not None
        first = await _by_key(db, session_id, idempotency_key)
        if first is None:
            raise
        return _replayed(first, data)
    # Checked here, under the session row's lock `add_message` took: an end that committed first is
    # seen, and an end that comes later waits for this message (and then stops its turn).
    if await db.scalar(select(Session.ended_at).where(Session.id == session.id)) is not None:
        await db.rollback()
        raise Conflict(f"session {session_id} has ended: it takes no new messages")
    event = await events.append(
        db,
        session.id,
        MessageUser(message=message_to_schema(message)),
        context={"input_message_id": str(message.id)},
        idempotency_key=f"message.user:{message.id}",
    )
    await db.commit()
    return message, event


async def end(db: AsyncSession, who: Identity, session_id: uuid.UUID) -> tuple[Session, bool]:
    """Closes the caller's session to new messages (Opswald's end; ending again keeps the first
    time). Returns the session and whether a turn was running as it ended, which the caller then
    stops. The update takes the session row's lock, as a turn's opening step does to read
    `ended_at`: a turn that opened first shows here as running; one that opens later stops itself."""
    row = await get(db, who, None, session_id)
    status = await db.scalar(
        update_rows(Session)
        .where(Session.id == row.id)
        .values(ended_at=func.coalesce(Session.ended_at, func.now()))
        .returning(Session.status)
    )
    await db.commit()
    await db.refresh(row)
    return row, status in ("active", "waitingfortoolresults")


def _replayed(first: Message, data: schemas.CreateMessage) -> tuple[Message, None]:
    if not _same_request(first, data):
        raise Conflict("this Idempotency-Key was used for a different message")
    return first, None


async def list_messages(
    db: AsyncSession, who: Identity, agent_id: uuid.UUID, session_id: uuid.UUID, offset: int, limit: int
) -> tuple[list[Message], int]:
    await get(db, who, agent_id, session_id)
    query = select(Message).where(Message.session_id == session_id).order_by(Message.sequence)
    return await page_of(db, query, offset, limit)


async def with_agent(db: AsyncSession, session_id: uuid.UUID) -> tuple[Session, Agent] | None:
    """A session and its agent, as a turn's step reads them (no owner check: the loop acts for the
    owner); None if the session is gone."""
    query = select(Session, Agent).join(Agent, Agent.id == Session.agent_id).where(Session.id == session_id)
    found = (await db.execute(query)).first()
    return None if found is None else (found[0], found[1])
