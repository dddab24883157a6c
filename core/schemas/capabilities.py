from __future__ import annotations

from typing import Any, Literal

import msgspec

CapabilityStatus = Literal["available", "coming_soon", "deprecated"]


class ToolDefinition(msgspec.Struct, kw_only=True):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments


class Capability(msgspec.Struct, kw_only=True):
    id: str
    name: str
    description: str
    status: CapabilityStatus
    icon: str | None
    category: str | None
    system_prompt: str | None
    tool_definitions: list[ToolDefinition]


class CapabilityList(msgspec.Struct, kw_only=True):
    """The list convention's `data`, plus the seed's `items` (the same list)."""

    data: list[Capability]
    items: list[Capability]
    total: int
    offset: int
    limit: int


class AgentCapabilities(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    capabilities: list[str]
