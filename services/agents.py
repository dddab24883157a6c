"""Agents: create, list with filters, update, archive, and their capabilities."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from msgspec import structs
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from capabilities import registry
from core.db.models import Agent
from core.errors import InvalidInput, NotFound, field_in
from core.identity import Identity
from core.schemas import agents as schemas
from core.schemas.capabilities import CapabilityConfigs, CapabilityItem
from services import mcp_servers
from services.common import changed_fields, check_size, page_of
from services.llm import check_model_exists

NAME_MAX = 2 * 1024
DESCRIPTION_MAX = 10 * 1024
SYSTEM_PROMPT_MAX = 1024 * 1024
CAPABILITIES_MAX = 250


def to_schema(row: Agent) -> schemas.Agent:
    return schemas.Agent(
        id=row.id,
        name=row.name,
        description=row.description,
        system_prompt=row.system_prompt,
        default_model_id=row.default_model_id,
        tags=row.tags,
        capabilities=row.capabilities,
        capability_configs=row.capability_configs,
        max_iterations=row.max_iterations,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def check_capabilities(
    items: list[CapabilityItem], field: str = "capabilities", extra: registry.Extra | None = None
) -> tuple[list[str], CapabilityConfigs]:
    """An agent's capabilities as given (ids, or `{id, config}`): their ids in order and their
    validated configurations (defaults left out; an all-default one is not kept). `extra`: the
    owner's MCP servers among them (`mcp_capabilities`)."""
    if len(items) > CAPABILITIES_MAX:
        raise InvalidInput(f"{field}: at most {CAPABILITIES_MAX} capabilities", field=field)
    ids = [item if isinstance(item, str) else item.id for item in items]
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"{field}: a capability is listed twice", field=field)
    if unknown := registry.unknown(ids, extra):
        raise InvalidInput(f"{field}: unknown capability {', '.join(map(repr, unknown))}", field=field)
    configs: CapabilityConfigs = {}
    for index, item in enumerate(items):
        if isinstance(item, str):
            continue
        spec = registry.CAPABILITIES.get(item.id) or (extra or {})[item.id]
        try:
            config = spec.parse_config(item.config)
        except msgspec.ValidationError as exc:
            inner = field_in(str(exc))
            where = f"{field}[{index}].config" + (f".{inner}" if inner else "")
            reason = str(exc).split(" - at `", 1)[0]
            raise InvalidInput(f"{where}: {reason} (capability {item.id!r})", field=where) from None
        if stored := msgspec.to_builtins(config):
            configs[item.id] = stored
    if conflicts := registry.tool_conflicts(ids, extra):
        raise InvalidInput(
            f"{field}: two capabilities offer a tool with the same name: {'; '.join(conflicts)}", field=field
        )
    return ids, configs


async def mcp_capabilities(db: AsyncSession, who: Identity, items: list[CapabilityItem]) -> registry.Extra:
    """The MCP servers (`mcp:{id}`) among an agent's capabilities that its owner may use."""
    ids = [item if isinstance(item, str) else item.id for item in items]
    return await mcp_servers.specs_for(db, who.user_id, ids)


async def _check_sizes(db: AsyncSession, who: Identity, values: dict[str, Any]) -> None:
    check_size("name", values.get("name"), NAME_MAX, "2 KB")
    check_size("description", values.get("description"), DESCRIPTION_MAX, "10 KB")
    check_size("system_prompt", values.get("system_prompt"), SYSTEM_PROMPT_MAX, "1 MB")
    if "capabilities" in values:
        extra = await mcp_capabilities(db, who, values["capabilities"])
        values["capabilities"], values["capability_configs"] = check_capabilities(
            values["capabilities"], extra=extra
        )


async def create(db: AsyncSession, who: Identity, data: schemas.CreateAgent) -> Agent:
    values = structs.asdict(data)
    await _check_sizes(db, who, values)
    await check_model_exists(db, who, data.default_model_id, "default_model_id")
    row = Agent(**values, owner_id=who.user_id)
    db.add(row)
    await db.commit()
    return row


async def get(db: AsyncSession, who: Identity, agent_id: uuid.UUID) -> Agent:
    """The caller's agent; anyone else's answers as if it did not exist."""
    row = await db.get(Agent, agent_id)
    if row is None or row.owner_id != who.user_id:
        raise NotFound(f"agent {agent_id} not found")
    return row


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
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        query = query.where(or_(Agent.name.ilike(pattern), Agent.description.ilike(pattern)))
    return await page_of(db, query, offset, limit)


async def update(db: AsyncSession, who: Identity, agent_id: uuid.UUID, patch: schemas.UpdateAgent) -> Agent:
    row = await get(db, who, agent_id)
    values = changed_fields(patch)
    await _check_sizes(db, who, values)
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
    extra = await mcp_capabilities(db, who, items)
    row.capabilities, row.capability_configs = check_capabilities(items, extra=extra)
    await db.commit()
    return row
