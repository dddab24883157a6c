"""What a capability is: prompt additions and tools; a tool is typed params plus an async handler."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from core.schemas.capabilities import Capability, CapabilityStatus, ToolDefinition


class ToolError(Exception):
    """A tool failed in a way the model should be told about (it becomes a tool result with an error)."""


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    session_id: uuid.UUID
    agent_id: uuid.UUID


Handler = Callable[[Any, ToolContext], Awaitable[Any]]


@dataclass(frozen=True, kw_only=True)
class Tool:
    name: str
    description: str
    params: type[msgspec.Struct]
    handler: Handler

    def definition(self) -> ToolDefinition:
        return ToolDefinition(
            name=self.name, description=self.description, parameters=json_schema(self.params)
        )

    def parse(self, arguments: dict[str, Any]) -> Any:
        """Validates raw arguments from the model; raises ToolError with msgspec's reason."""
        try:
            return msgspec.convert(arguments, self.params)
        except msgspec.ValidationError as exc:
            raise ToolError(f"invalid arguments for {self.name}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class CapabilitySpec:
    id: str
    name: str
    description: str
    status: CapabilityStatus = "available"
    icon: str | None = None
    category: str | None = None
    system_prompt: str | None = None
    tools: tuple[Tool, ...] = field(default_factory=tuple)
    timeout_s: float = 60.0

    def public(self) -> Capability:
        return Capability(
            id=self.id,
            name=self.name,
            description=self.description,
            status=self.status,
            icon=self.icon,
            category=self.category,
            system_prompt=self.system_prompt,
            tool_definitions=[tool.definition() for tool in self.tools],
        )


def json_schema(params: type[msgspec.Struct]) -> dict[str, Any]:
    """The params struct as one self-contained JSON Schema object (what LLM tool APIs expect)."""
    schema = msgspec.json.schema(params)
    defs: dict[str, Any] = schema.pop("$defs", {})
    ref = schema.pop("$ref", None)
    if ref is None:
        return schema
    top = dict(defs.pop(ref.rsplit("/", 1)[-1]))
    top.setdefault("properties", {})
    if defs:
        top["$defs"] = defs
    return top
