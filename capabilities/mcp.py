"""MCP servers as capabilities (`mcp:{id}`): their tools listed and called through the official `mcp`
SDK, one connection per listing or call.

A server's tools reach the model under names LLM APIs accept (`^[A-Za-z0-9_-]{1,64}$`, with the
server's `tool_prefix` in front); the listing stores each name beside the server's own, so a call
maps back exactly. Failures (the server down, dying mid-call, answering an error) are ToolErrors the
model reads; a hanging server is cut off by the tool activity's timeout (`timeout_s`).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import msgspec
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import (
    MCP_DEFAULT_SSE_READ_TIMEOUT,
    MCP_DEFAULT_TIMEOUT,
    create_mcp_http_client,
)

from capabilities.base import CapabilitySpec, Tool, ToolContext, ToolError
from core.errors import InvalidInput
from core.net import NetPolicy, PinnedTransport, check_public_url
from core.schemas.capabilities import ToolDefinition

PREFIX = "mcp:"
NAME_MAX = 64  # OpenAI's and Anthropic's limit on a tool name
TOOLS_MAX = 128  # OpenAI's limit on tools in one request
_INVALID = re.compile(r"[^A-Za-z0-9_-]")
LISTING_PAGES_MAX = 20


def capability_id(server_id: uuid.UUID) -> str:
    return f"{PREFIX}{server_id}"


def server_id_of(capability: str) -> uuid.UUID | None:
    """The server id in an `mcp:{id}` capability id, or None if it is not one."""
    if not capability.startswith(PREFIX):
        return None
    try:
        return uuid.UUID(capability[len(PREFIX) :])
    except ValueError:
        return None


class McpUnavailable(Exception):
    """The server could not be reached, or failed to answer (message safe to show: no header values)."""


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """How to reach one server. `headers` is None when some are stored but cannot be read here."""

    server_id: uuid.UUID
    name: str
    transport: str
    url: str | None = None
    headers: dict[str, str] | None = field(default_factory=dict)
    command: str | None = None
    args: tuple[str, ...] = ()
    # A user's server may only reach public addresses (checked again at every connection).
    public_only: bool = True


def exposed_names(prefix: str, remote_names: list[str]) -> list[str]:
    """The names the model sees, in order: `prefix + name` with invalid characters made `_`; too
    long, or equal to an earlier one once sanitised, it ends in `_` and 8 hex of the server's name."""
    taken: set[str] = set()
    out = []
    for remote in remote_names:
        name = _INVALID.sub("_", prefix + remote) or "tool"
        if len(name) > NAME_MAX or name in taken:
            digest = hashlib.sha256(remote.encode()).hexdigest()[:8]
            name = f"{name[: NAME_MAX - 9]}_{digest}"
        taken.add(name)
        out.append(name)
    return out


@asynccontextmanager
async def _connected(endpoint: Endpoint, policy: NetPolicy) -> AsyncIterator[Client]:
    if endpoint.transport == "stdio":
        assert endpoint.command is not None
        params = StdioServerParameters(command=endpoint.command, args=list(endpoint.args))
        async with Client(params, cache=None) as client:
            yield client
        return
    assert endpoint.url is not None
    if endpoint.headers is None:
        raise McpUnavailable(
            "the server's stored headers cannot be read: SECRETS_ENCRYPTION_KEY is not set, or is not "
            "the key they were stored under"
        )
    if endpoint.public_only:  # checked here for a clear error; the pinned transport checks again
        try:
            await check_public_url(endpoint.url, "url", "an MCP server", policy)
        except InvalidInput as exc:
            raise McpUnavailable(exc.message) from None
    http = (
        _pinned_client(endpoint.headers, policy)
        if endpoint.public_only
        else create_mcp_http_client(headers=endpoint.headers)
    )
    async with http, Client(streamable_http_client(endpoint.url, http_client=http), cache=None) as client:
        yield client


def _pinned_client(headers: dict[str, str], policy: NetPolicy) -> httpx2.AsyncClient:
    """The SDK's client settings, over the pinned transport and without proxies from the environment
    (a proxy would connect by name)."""
    return httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
        transport=PinnedTransport(policy),
        trust_env=False,
    )


def _failure(exc: BaseException) -> str:
    """One line about what went wrong: the first error inside exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def list_tools(endpoint: Endpoint, policy: NetPolicy, prefix: str) -> list[dict[str, Any]]:
    """The server's tools as stored in the cache: name (as the model sees it), remote_name,
    description, input_schema. Raises McpUnavailable."""
    listed = []
    try:
        async with _connected(endpoint, policy) as client:
            cursor: str | None = None
            for _ in range(LISTING_PAGES_MAX):
                page = await client.list_tools(cursor=cursor)
                listed += page.tools
                cursor = page.next_cursor
                if cursor is None:
                    break
    except McpUnavailable:
        raise
    except Exception as exc:
        raise McpUnavailable(f"listing the tools failed: {_failure(exc)}") from None
    if len(listed) > TOOLS_MAX:
        raise McpUnavailable(f"the server offers {len(listed)} tools; at most {TOOLS_MAX} are supported")
    names = exposed_names(prefix, [t.name for t in listed])
    return [
        {
            "name": name,
            "remote_name": tool.name,
            "description": tool.description or tool.title or "",
            "input_schema": {**tool.input_schema, "type": "object"},
        }
        for name, tool in zip(names, listed, strict=True)
    ]


async def call_tool(
    endpoint: Endpoint, policy: NetPolicy, remote_name: str, arguments: dict[str, Any]
) -> Any:
    """Calls one tool; its result as the model reads it. Raises ToolError (the server's error
    result, or why it could not be reached)."""
    try:
        async with _connected(endpoint, policy) as client:
            result = await client.call_tool(remote_name, arguments)
    except McpUnavailable as exc:
        raise ToolError(f"MCP server {endpoint.name!r}: {exc}") from None
    except Exception as exc:
        raise ToolError(f"MCP server {endpoint.name!r} failed: {_failure(exc)}") from None
    text = "\n".join(_text_of(block) for block in result.content)
    if result.is_error:
        raise ToolError(text or f"the MCP tool {remote_name} failed")
    # Structured content, when there is any, is the result (its text block is, by the spec, the same
    # serialised); otherwise the text.
    return result.structured_content if result.structured_content is not None else text


def _text_of(block: Any) -> str:
    """A content block as text the model can read (media is described, not inlined)."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        return f"[{kind}: {block.mime_type}, {len(block.data) * 3 // 4} bytes]"
    if kind == "resource_link":
        return f"[resource: {block.uri}]"
    if kind == "resource":
        inner = block.resource
        return str(inner.text) if hasattr(inner, "text") else f"[resource: {inner.uri}, binary]"
    return f"[{kind} content]"


class _Arguments(msgspec.Struct):
    """Placeholder: an MCP tool's arguments are checked against the server's own JSON Schema, by
    the server."""


@dataclass(frozen=True, kw_only=True)
class McpTool(Tool):
    remote_name: str
    input_schema: dict[str, Any]

    def definition(self) -> ToolDefinition:
        return ToolDefinition(name=self.name, description=self.description, parameters=self.input_schema)

    def parse(self, arguments: dict[str, Any]) -> Any:
        if not isinstance(arguments, dict):
            raise ToolError(f"invalid arguments for {self.name}: expected a JSON object")
        return arguments


def spec(endpoint: Endpoint, tools: list[dict[str, Any]], timeout_s: float) -> CapabilitySpec:
    """The capability `mcp:{id}` with the server's cached tools."""

    def tool(cached: dict[str, Any]) -> McpTool:
        remote = str(cached["remote_name"])

        async def handler(arguments: dict[str, Any], ctx: ToolContext) -> Any:
            return await call_tool(endpoint, ctx.network, remote, arguments)

        return McpTool(
            name=str(cached["name"]),
            description=str(cached.get("description") or ""),
            params=_Arguments,
            handler=handler,
            remote_name=remote,
            input_schema=dict(cached.get("input_schema") or {"type": "object", "properties": {}}),
        )

    return CapabilitySpec(
        id=capability_id(endpoint.server_id),
        name=endpoint.name,
        description=f"Tools of the MCP server {endpoint.name!r}",
        category="mcp",
        tools=tuple(tool(t) for t in tools),
        timeout_s=timeout_s,
    )
