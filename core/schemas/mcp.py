"""MCP servers on the wire: `/v1/mcp-servers`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

Transport = Literal["streamable_http", "stdio"]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Url = Annotated[str, Meta(pattern=r"^https?://[^\s/]+", max_length=2000)]
# RFC 9110 token characters; values are any visible text (no line breaks).
HeaderName = Annotated[str, Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,200}$")]
HeaderValue = Annotated[str, Meta(pattern=r"^[^\r\n\x00]*$", max_length=10_000)]
Headers = Annotated[dict[HeaderName, HeaderValue], Meta(max_length=50)]
Command = Annotated[str, Meta(min_length=1, max_length=2000)]
Args = Annotated[list[Annotated[str, Meta(max_length=10_000)]], Meta(max_length=200)]
ToolPrefix = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9_-]{0,32}$",
        description="put before each tool name the model sees (letters, digits, _ and -; at most 32)",
    ),
]
TimeoutS = Annotated[
    float, Meta(ge=1, le=60, description="seconds a tool call may take before it is a tool error")
]


class McpTool(msgspec.Struct, kw_only=True):
    name: str  # as the model sees it: the prefix and the server's name, made valid for LLM APIs
    remote_name: str  # the server's own name for it
    description: str
    parameters: dict[str, Any]  # the server's JSON Schema of the arguments


class McpServer(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    transport: Transport
    capability_id: str  # "mcp:{id}": what agents enable
    shared: bool  # created by an admin: usable by everyone, changed only by admins
    # Where the server is: shown only to whoever may change it (null / empty for others).
    url: str | None
    header_names: list[str]  # which headers are set; their values are never returned
    command: str | None
    args: list[str]
    tool_prefix: str
    timeout_s: float
    tools: list[McpTool]
    tools_refreshed_at: datetime | None  # the last successful listing
    tools_error: str | None  # why the last listing failed (the cached tools stay)
    created_at: datetime
    updated_at: datetime


class CreateMcpServer(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    transport: Transport
    url: Url | None = None  # streamable_http
    headers: Headers = msgspec.field(default_factory=dict)  # streamable_http; write-only
    command: Command | None = None  # stdio (admins only)
    args: Args = msgspec.field(default_factory=list)  # stdio
    tool_prefix: ToolPrefix = ""
    timeout_s: TimeoutS = 60.0


class UpdateMcpServer(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    url: Url | UnsetType = UNSET
    # Replaces every stored header ({} removes them all).
    headers: Headers | UnsetType = UNSET
    command: Command | UnsetType = UNSET
    args: Args | UnsetType = UNSET
    tool_prefix: ToolPrefix | UnsetType = UNSET
    timeout_s: TimeoutS | UnsetType = UNSET
