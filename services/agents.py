"""Agents: create (or replace, with a client-chosen id), list with filters, update, archive, and
their capabilities, client-side tools and starter files."""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from capabilities import registry
from core.db.models import Agent
from core.errors import Conflict, InvalidInput, NotFound, field_in
from core.identity import Identity
from core.schemas import agents as schemas
from core.schemas.capabilities import AgentCapabilityConfig, CapabilityConfigs, CapabilityItem
from services import initial_files, mcp_servers
from services.common import changed_fields, check_size, page_of
from services.llm import check_model_exists

NAME_MAX = 2 * 1024
DESCRIPTION_MAX = 10 * 1024
SYSTEM_PROMPT_MAX = 1024 * 1024
CAPABILITIES_MAX = 250
TOOLS_MAX = 128  # what OpenAI accepts in one call
# The capability that lets the model read and write the session's files: an agent given starter
# files gets it, as in Everruns (else its model could not see them).
FILE_SYSTEM = "session_file_system"
# Everruns' agent ids: `agent_` and the UUID's 32 hex digits.
_PREFIXED_ID = re.compile(r"^agent_([0-9a-f]{32})$")


def to_schema(row: Agent) -> schemas.Agent:
    configs = row.capability_configs or {}
    return schemas.Agent(
        id=row.id,
        name=row.name,
        display_name=row.display_name,
        description=row.description,
        system_prompt=row.system_prompt,
        default_model_id=row.default_model_id,
        harness_id=schemas.GENERIC_HARNESS_ID,
        tags=row.tags,
        capabilities=[AgentCapabilityConfig(ref=c, config=configs.get(c)) for c in row.capabilities],
        tools=[msgspec.convert(t, schemas.ClientTool) for t in row.tools],
        initial_files=[msgspec.convert(f, schemas.StoredInitialFile) for f in row.initial_files],
        parallel_tool_calls=row.parallel_tool_calls,
        max_iterations=row.max_iterations,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def parse_id(raw: str, field: str) -> uuid.UUID:
    """An agent id as a client may give it: a UUID, or Everruns' `agent_<32 hex>` form of one."""
    found = _PREFIXED_ID.match(raw)
    try:
        return uuid.UUID(found.group(1) if found else raw)
    except ValueError:
        raise InvalidInput(
            f"{field}: {raw!r} is not an agent id (a UUID, or agent_ and 32 lowercase hex digits)",
            field=field,
        ) from None


def check_harness(harness_id: str | None, harness_name: str | None) -> None:
    """A request may name the one harness there is, the built-in generic one; nothing else."""
    if harness_id is not None and harness_name is not None:
        raise InvalidInput("harness_id and harness_name name the same thing: give one", field="harness_id")
    if harness_id is not None and harness_id != schemas.GENERIC_HARNESS_ID:
        raise InvalidInput(
            f"harness_id: no harness {harness_id!r}; this server has only the built-in generic harness "
            f"({schemas.GENERIC_HARNESS_ID})",
            field="harness_id",
        )
    if harness_name is not None and harness_name != schemas.GENERIC_HARNESS_NAME:
        raise InvalidInput(
            f"harness_name: no harness {harness_name!r}; this server has only the built-in "
            f"{schemas.GENERIC_HARNESS_NAME!r} harness",
            field="harness_name",
        )


def _capability_id(item: CapabilityItem, where: str) -> str:
    if isinstance(item, str):
        return item
    if item.capability_id is None:
        both = item.ref is not None
        raise InvalidInput(
            f"{where}: give the capability's ref" + (" or its id, not both" if both else " (or id)"),
            field=where,
        )
    return item.capability_id


def check_capabilities(
    items: list[CapabilityItem], field: str = "capabilities", extra: registry.Extra | None = None
) -> tuple[list[str], CapabilityConfigs]:
    """An agent's capabilities as given (ids, or `{ref, config}` / `{id, config}`): their ids in
    order and their validated configurations (defaults left out; an all-default one is not kept).
    `extra`: the owner's MCP servers among them (`mcp_capabilities`)."""
    if len(items) > CAPABILITIES_MAX:
        raise InvalidInput(f"{field}: at most {CAPABILITIES_MAX} capabilities", field=field)
    ids = [_capability_id(item, f"{field}[{index}]") for index, item in enumerate(items)]
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"{field}: a capability is listed twice", field=field)
    if unknown := registry.unknown(ids, extra):
        raise InvalidInput(f"{field}: unknown capability {', '.join(map(repr, unknown))}", field=field)
    configs: CapabilityConfigs = {}
    for index, (item, capability_id) in enumerate(zip(items, ids, strict=True)):
        if isinstance(item, str):
            continue
        spec = registry.CAPABILITIES.get(capability_id) or (extra or {})[capability_id]
        try:
            config = spec.parse_config(item.config)
        except msgspec.ValidationError as exc:
            inner = field_in(str(exc))
            where = f"{field}[{index}].config" + (f".{inner}" if inner else "")
            reason = str(exc).split(" - at `", 1)[0]
            raise InvalidInput(f"{where}: {reason} (capability {capability_id!r})", field=where) from None
        if stored := msgspec.to_builtins(config):
            configs[capability_id] = stored
    if conflicts := registry.tool_conflicts(ids, extra):
        raise InvalidInput(
            f"{field}: two capabilities offer a tool with the same name: {'; '.join(conflicts)}", field=field
        )
    return ids, configs


async def mcp_capabilities(db: AsyncSession, who: Identity, ids: list[str]) -> registry.Extra:
    """The MCP servers (`mcp:{id}`) among an agent's capability ids that its owner may use."""
    return await mcp_servers.specs_for(db, who.user_id, ids)


def _check_parameters(schema: dict[str, Any], where: str) -> None:
    """What every LLM API needs of a tool's `parameters`: a JSON Schema of an object."""
    field = f"{where}.parameters"
    if schema.get("type") != "object":
        raise InvalidInput(f'{field}: must be a JSON Schema with "type": "object"', field=field)
    properties = schema.get("properties", {})
    if not isinstance(properties, dict) or not all(isinstance(p, dict) for p in properties.values()):
        raise InvalidInput(f"{field}.properties: must map each argument to its JSON Schema", field=field)
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) and r in properties for r in required):
        raise InvalidInput(f"{field}.required: must list names from properties", field=field)


def check_tools(
    tools: list[schemas.ClientTool],
    capability_ids: list[str],
    extra: registry.Extra | None,
    *,
    field: str = "tools",
    beside: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Client-side tools as they are kept (`[{name, description, parameters, type, ...}]`): each
    name once, none a capability's tool name (or one of `beside`, the agent's own tools for a
    session's), each `parameters` an object schema."""
    if len(tools) + len(beside or []) > TOOLS_MAX:
        raise InvalidInput(f"{field}: at most {TOOLS_MAX} client-side tools", field=field)
    offered = {tool.name: spec.id for tool, spec in registry.tools_of(capability_ids, extra)}
    own = {t["name"] for t in beside or []}
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"{field}[{index}]"
        if tool.name in seen:
            raise InvalidInput(f"{where}.name: {tool.name!r} is given twice", field=f"{where}.name")
        if tool.name in offered:
            raise InvalidInput(
                f"{where}.name: {tool.name!r} is a tool of capability {offered[tool.name]!r}; "
                "a client-side tool needs a name of its own",
                field=f"{where}.name",
            )
        if tool.name in own:
            raise InvalidInput(
                f"{where}.name: {tool.name!r} is one of the agent's client-side tools already",
                field=f"{where}.name",
            )
        seen.add(tool.name)
        _check_parameters(tool.parameters, where)
    # Kept without the optional fields not given (null), as the other helpers' readers expect.
    return [{k: v for k, v in msgspec.to_builtins(tool).items() if v is not None} for tool in tools]


async def _checked(
    db: AsyncSession, who: Identity, values: dict[str, Any], row: Agent | None
) -> dict[str, Any]:
    """The given fields (of a create, or of a PATCH over `row`) checked and in their stored form."""
    check_size("name", values.get("name"), NAME_MAX, "2 KB")
    check_size("display_name", values.get("display_name"), NAME_MAX, "2 KB")
    check_size("description", values.get("description"), DESCRIPTION_MAX, "10 KB")
    check_size("system_prompt", values.get("system_prompt"), SYSTEM_PROMPT_MAX, "1 MB")
    check_harness(values.pop("harness_id", None), values.pop("harness_name", None))
    if "max_iterations" in values and values["max_iterations"] is None:
        values["max_iterations"] = 25
    if "initial_files" in values:
        values["initial_files"] = initial_files.check(values["initial_files"])
    if "capabilities" in values:
        items: list[CapabilityItem] = list(values["capabilities"])
        ids = [_capability_id(item, f"capabilities[{i}]") for i, item in enumerate(items)]
        if values.get("initial_files") and FILE_SYSTEM not in ids:
            items.append(FILE_SYSTEM)
        extra = await mcp_capabilities(db, who, [*ids, FILE_SYSTEM])
        values["capabilities"], values["capability_configs"] = check_capabilities(items, extra=extra)
    elif values.get("initial_files") and row is not None and FILE_SYSTEM not in row.capabilities:
        values["capabilities"] = [*row.capabilities, FILE_SYSTEM]
        extra = await mcp_capabilities(db, who, values["capabilities"])
        check_capabilities(values["capabilities"], extra=extra)  # a clash with an MCP server's tool
    if "tools" in values or "capabilities" in values:
        ids = values.get("capabilities", row.capabilities if row else [])
        tools = values.get("tools")
        given = tools if tools is not None else _as_tools(row.tools if row else [])
        checked = check_tools(given, ids, await mcp_capabilities(db, who, ids))
        if tools is not None:
            values["tools"] = checked
    return values


def _as_tools(stored: list[dict[str, Any]]) -> list[schemas.ClientTool]:
    return [msgspec.convert(t, schemas.ClientTool) for t in stored]


async def create(db: AsyncSession, who: Identity, data: schemas.CreateAgent) -> tuple[Agent, bool]:
    """A new agent, or, for an `id` of one of the caller's agents, that agent with every field
    replaced by the request's (Everruns' upsert, the SDK's `apply`). Returns it and whether it is
    new. An `id` someone else's agent has is a Conflict."""
    values = msgspec.structs.asdict(data)
    given_id = values.pop("id")
    values = await _checked(db, who, values, None)
    await check_model_exists(db, who, data.default_model_id, "default_model_id")
    agent_id = parse_id(given_id, "id") if given_id is not None else None
    taken = Conflict(f"id: the agent id {given_id} is taken; choose another", field="id")
    if agent_id is not None and (existing := await db.get(Agent, agent_id)) is not None:
        if existing.owner_id != who.user_id:
            raise taken
        for field, value in values.items():
            setattr(existing, field, value)
        await db.commit()
        return existing, False
    row = Agent(**values, owner_id=who.user_id)
    if agent_id is not None:
        row.id = agent_id
    db.add(row)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        if agent_id is None:
            raise  # not a taken id (there was none): a missing owner or model is a server fault
        # The same id raced in from a concurrent request, which committed first.
        raise taken from None
    return row, True


async def get(db: AsyncSession, who: Identity, agent_id: uuid.UUID) -> Agent:
    """The caller's agent; anyone else's answers as if it did not exist."""
    row = await db.get(Agent, agent_id)
    if row is None or row.owner_id != who.user_id:
        raise NotFound(f"agent {agent_id} not found")
    return row


async def by_name(db: AsyncSession, who: Identity, name: str) -> Agent:
    """The caller's one active agent of that name (names are not unique here, as they are in
    Everruns: several active ones is InvalidInput, only archived ones a Conflict)."""
    query = select(Agent).where(Agent.owner_id == who.user_id, Agent.name == name).order_by(Agent.id.desc())
    found = list((await db.execute(query)).scalars())
    active = [a for a in found if a.status == "active"]
    if len(active) == 1:
        return active[0]
    if len(active) > 1:
        raise InvalidInput(
            f"agent_name: {len(active)} of your agents are named {name!r}; give agent_id instead",
            field="agent_name",
        )
    if found:
        raise Conflict(f"agent {name!r} is archived: new sessions are refused")
    raise NotFound(f"no agent named {name!r}")


def search_pattern(text: str) -> str:
    """A case-insensitive substring search for ILIKE, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_(
    db: AsyncSession,
    who: Identity,
    *,
    offset: int,
    limit: int,
    status: str | None = None,
    tag: str | None = None,
    search: str | None = None,
    include_archived: bool = False,
) -> tuple[list[Agent], int]:
    query = select(Agent).where(Agent.owner_id == who.user_id).order_by(Agent.id.desc())
    if status is not None:
        query = query.where(Agent.status == status)
    elif not include_archived:
        query = query.where(Agent.status == "active")
    if tag:
        query = query.where(Agent.tags.contains([tag]))
    if search:
        pattern = search_pattern(search)
        query = query.where(or_(Agent.name.ilike(pattern), Agent.description.ilike(pattern)))
    return await page_of(db, query, offset, limit)


async def update(db: AsyncSession, who: Identity, agent_id: uuid.UUID, patch: schemas.UpdateAgent) -> Agent:
    row = await get(db, who, agent_id)
    values = await _checked(db, who, changed_fields(patch), row)
    if "default_model_id" in values:
        await check_model_exists(db, who, values["default_model_id"], "default_model_id")
    for field, value in values.items():
        setattr(row, field, value)
    await db.commit()
    return row


async def archive(db: AsyncSession, who: Identity, agent_id: uuid.UUID) -> None:
    row = await get(db, who, agent_id)
    row.status = "archived"
    await db.commit()


async def set_capabilities(
    db: AsyncSession, who: Identity, agent_id: uuid.UUID, items: list[CapabilityItem]
) -> Agent:
    """Replaces the agent's capabilities and their configurations (a bare id: the defaults)."""
    row = await get(db, who, agent_id)
    values = await _checked(db, who, {"capabilities": items}, row)
    row.capabilities, row.capability_configs = values["capabilities"], values["capability_configs"]
    await db.commit()
    return row
