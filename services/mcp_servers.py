"""MCP servers: who sees and changes them, their encrypted headers, their cached tool listing, and
the capabilities (`mcp:{id}`) they offer to an agent's owner."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from capabilities import mcp
from capabilities.base import CapabilitySpec
from core.crypto import SecretBox
from core.db.models import Agent, McpServer
from core.errors import BadGateway, Conflict, Forbidden, InvalidInput, NotFound, ServiceUnavailable
from core.identity import Identity
from core.ids import uuid7
from core.net import NetPolicy, check_public_url
from core.schemas import mcp as schemas
from services.common import changed_fields, page_of


def headers_context(server_id: uuid.UUID) -> str:
    return f"mcp_server:{server_id}:headers"


# Who sees what, as for LLM providers: an admin's servers (owner_id NULL) are shared with everyone
# and changed only by admins; a user's are theirs alone.


def _visible_to(user_id: uuid.UUID) -> ColumnElement[bool]:
    return or_(McpServer.owner_id.is_(None), McpServer.owner_id == user_id)


def may_edit(who: Identity, row: McpServer) -> bool:
    return row.owner_id == who.user_id or (row.owner_id is None and who.is_admin)


def to_schema(row: McpServer, who: Identity) -> schemas.McpServer:
    """Where the server is (URL, header names, command) only for whoever may change it: a shared
    server's address or arguments can carry secrets of their own."""
    editor = may_edit(who, row)
    return schemas.McpServer(
        id=row.id,
        name=row.name,
        transport=row.transport,
        capability_id=mcp.capability_id(row.id),
        shared=row.owner_id is None,
        url=row.url if editor else None,
        header_names=list(row.header_names) if editor else [],
        command=row.command if editor else None,
        args=list(row.args) if editor else [],
        tool_prefix=row.tool_prefix,
        timeout_s=row.timeout_s,
        tools=[
            schemas.McpTool(
                name=t["name"],
                remote_name=t["remote_name"],
                description=t.get("description") or "",
                parameters=t.get("input_schema") or {},
            )
            for t in row.tools
        ],
        tools_refreshed_at=row.tools_refreshed_at,
        tools_error=row.tools_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _check_url(who: Identity, url: str, policy: NetPolicy) -> None:
    """A user's server may only be on a public internet address (the API and the workers would
    otherwise call into the operator's network for them); admins may point anywhere."""
    await check_public_url(url, "url", "an MCP server", policy, any_address=who.is_admin)


def _require(box: SecretBox | None) -> SecretBox:
    if box is None:
        raise ServiceUnavailable(
            "storing MCP server headers needs SECRETS_ENCRYPTION_KEY (32 random bytes, base64) on the server"
        )
    return box


def _set_headers(row: McpServer, box: SecretBox | None, headers: dict[str, str]) -> None:
    row.header_names = sorted(headers)
    row.headers_encrypted = (
        _require(box).seal(json.dumps(headers), headers_context(row.id)) if headers else None
    )


def endpoint(row: McpServer, box: SecretBox | None) -> mcp.Endpoint:
    headers: dict[str, str] | None = {}
    if row.headers_encrypted is not None:
        try:
            headers = json.loads(_require(box).open(row.headers_encrypted, headers_context(row.id)))
        except Exception:  # no key, or not the one they were sealed with: a call says so, not a crash
            headers = None
    return mcp.Endpoint(
        server_id=row.id,
        name=row.name,
        transport=row.transport,
        url=row.url,
        headers=headers,
        command=row.command,
        args=tuple(row.args),
        public_only=row.owner_id is not None,
    )


# CRUD


async def create(
    db: AsyncSession,
    who: Identity,
    box: SecretBox | None,
    data: schemas.CreateMcpServer,
    *,
    policy: NetPolicy,
    list_timeout_s: float,
) -> McpServer:
    if data.transport == "stdio":
        if not who.is_admin:
            raise Forbidden("only an admin may add a stdio MCP server: it runs a command on the workers")
        if data.command is None:
            raise InvalidInput("command: required for a stdio server", field="command")
        if data.url is not None or data.headers:
            raise InvalidInput("url and headers are for streamable_http servers", field="url")
    else:
        if data.url is None:
            raise InvalidInput("url: required for a streamable_http server", field="url")
        if data.command is not None or data.args:
            raise InvalidInput("command and args are for stdio servers", field="command")
        await _check_url(who, data.url, policy)
    # The id is known before insert: the headers' ciphertext is bound to it.
    row = McpServer(
        id=uuid7(),
        owner_id=None if who.is_admin else who.user_id,
        name=data.name,
        transport=data.transport,
        url=data.url,
        command=data.command,
        args=list(data.args),
        tool_prefix=data.tool_prefix,
        timeout_s=data.timeout_s,
        tools=[],
    )
    _set_headers(row, box, data.headers)
    db.add(row)
    await db.commit()
    # A server that does not answer yet is still added: `tools_error` says why, refresh retries.
    await _relist(db, row, box, policy, list_timeout_s)
    return row


async def list_(db: AsyncSession, who: Identity, offset: int, limit: int) -> tuple[list[McpServer], int]:
    query = select(McpServer).where(_visible_to(who.user_id)).order_by(McpServer.id)
    return await page_of(db, query, offset, limit)


async def get(db: AsyncSession, who: Identity, server_id: uuid.UUID, *, edit: bool = False) -> McpServer:
    """A server the caller can see (else 404); with `edit`, one they may change (else 403)."""
    row = await db.get(McpServer, server_id)
    if row is None or not (row.owner_id is None or row.owner_id == who.user_id):
        raise NotFound(f"MCP server {server_id} not found")
    if edit and not may_edit(who, row):
        raise Forbidden(f"MCP server {server_id} is shared: only an admin may change it")
    return row


async def update(
    db: AsyncSession,
    who: Identity,
    box: SecretBox | None,
    server_id: uuid.UUID,
    patch: schemas.UpdateMcpServer,
    *,
    policy: NetPolicy,
    list_timeout_s: float,
) -> McpServer:
    row = await get(db, who, server_id, edit=True)
    values = changed_fields(patch)
    http_only = {"url", "headers"} & set(values)
    stdio_only = {"command", "args"} & set(values)
    if row.transport == "stdio" and http_only:
        raise InvalidInput("url and headers are for streamable_http servers", field=sorted(http_only)[0])
    if row.transport == "streamable_http" and stdio_only:
        raise InvalidInput("command and args are for stdio servers", field=sorted(stdio_only)[0])
    if "url" in values:
        await _check_url(who, values["url"], policy)
        if values["url"] != row.url and row.headers_encrypted is not None and "headers" not in values:
            # Otherwise the stored headers would go to a host their owner never chose for them.
            raise InvalidInput(
                "changing url of a server with stored headers needs headers in the same request "
                "(the headers again, or {} to drop them)",
                field="headers",
            )
    if "headers" in values:
        _set_headers(row, box, values.pop("headers"))
    for name, value in values.items():
        setattr(row, name, value)
    await db.commit()
    if http_only or stdio_only:
        await _relist(db, row, box, policy, list_timeout_s)
    elif "tool_prefix" in values:
        names = mcp.exposed_names(row.tool_prefix, [t["remote_name"] for t in row.tools])
        row.tools = [{**t, "name": n} for t, n in zip(row.tools, names, strict=True)]
        await db.commit()
    return row


async def delete(db: AsyncSession, who: Identity, server_id: uuid.UUID) -> None:
    row = await get(db, who, server_id, edit=True)
    enabled = Agent.capabilities.contains([mcp.capability_id(row.id)])
    # The caller's agents by name; anyone else's only as a count (not the admin's to see).
    mine = await db.execute(
        select(Agent.name).where(enabled, Agent.owner_id == who.user_id).order_by(Agent.name).limit(5)
    )
    names = [f"agent {name!r}" for name in mine.scalars()]
    others = await db.scalar(
        select(func.count()).select_from(Agent).where(enabled, Agent.owner_id != who.user_id)
    )
    if others:
        names.append(f"{others} agent(s) of other users")
    if names:
        raise Conflict(f"the MCP server is enabled by {', '.join(names)}; change those first")
    await db.delete(row)
    await db.commit()


# The tool listing


async def refresh(
    db: AsyncSession,
    who: Identity,
    box: SecretBox | None,
    server_id: uuid.UUID,
    *,
    policy: NetPolicy,
    list_timeout_s: float,
) -> McpServer:
    """Lists the server's tools again; 502 if it does not answer (the cached tools stay)."""
    row = await get(db, who, server_id, edit=True)
    if not await _relist(db, row, box, policy, list_timeout_s):
        raise BadGateway(f"MCP server {row.name!r}: {row.tools_error}")
    return row


async def _relist(
    db: AsyncSession, row: McpServer, box: SecretBox | None, policy: NetPolicy, timeout_s: float
) -> bool:
    """Stores the server's current tools, or why they could not be listed; True on success."""
    try:
        async with asyncio.timeout(timeout_s):
            tools = await mcp.list_tools(endpoint(row, box), policy, row.tool_prefix)
    except TimeoutError:
        row.tools_error = f"the server did not list its tools within {timeout_s:g} s"
    except mcp.McpUnavailable as exc:
        row.tools_error = str(exc)
    else:
        row.tools, row.tools_error, row.tools_refreshed_at = tools, None, datetime.now(UTC)
    await db.commit()
    return row.tools_error is None


# Secrets


async def rewrap_all(db: AsyncSession, box: SecretBox) -> int:
    """Re-encrypts every server's headers under the current master key; returns how many changed."""
    changed = 0
    query = select(McpServer).where(McpServer.headers_encrypted.is_not(None))
    for row in (await db.execute(query)).scalars():
        assert row.headers_encrypted is not None
        if box.needs_rewrap(row.headers_encrypted):
            plaintext = box.open(row.headers_encrypted, headers_context(row.id))
            row.headers_encrypted = box.seal(plaintext, headers_context(row.id))
            changed += 1
    await db.commit()
    return changed


# Capabilities


async def specs_for(
    db: AsyncSession, user_id: uuid.UUID, capability_ids: Iterable[str], box: SecretBox | None = None
) -> dict[str, CapabilitySpec]:
    """The `mcp:{id}` capabilities among `capability_ids` that the user may use, by id, with their
    cached tools (no server is contacted). Without `box`, headers are not read: the specs can
    describe their tools but not call them."""
    ids = [i for c in capability_ids if (i := mcp.server_id_of(c)) is not None]
    if not ids:
        return {}
    query = select(McpServer).where(McpServer.id.in_(ids), _visible_to(user_id))
    rows = (await db.execute(query)).scalars()
    return {mcp.capability_id(r.id): _spec(r, box) for r in rows}


async def visible_specs(db: AsyncSession, who: Identity) -> list[CapabilitySpec]:
    query = select(McpServer).where(_visible_to(who.user_id)).order_by(McpServer.id)
    return [_spec(r, None) for r in (await db.execute(query)).scalars()]


def _spec(row: McpServer, box: SecretBox | None) -> CapabilitySpec:
    return mcp.spec(endpoint(row, box), list(row.tools), row.timeout_s)
