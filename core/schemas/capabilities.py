from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

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
    # JSON Schema of the per-agent configuration (`{"id": ..., "config": {...}}`).
    config_schema: dict[str, Any]


class CapabilityList(msgspec.Struct, kw_only=True):
    """The list convention's `data`, plus the seed's `items` (the same list)."""

    data: list[Capability]
    items: list[Capability]
    total: int
    offset: int
    limit: int


class ConfiguredCapability(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A capability with its per-agent configuration (see `config_schema` of the capability),
    named by `ref` (Everruns' current clients) or `id` (this API's first form): exactly one."""

    ref: str | None = None
    id: str | None = None
    config: dict[str, Any] | None = None  # null: the defaults

    @property
    def capability_id(self) -> str | None:
        return self.ref if self.id is None else self.id if self.ref is None else None


# An agent's capability, in requests: a bare id, or a ref (or id) with a configuration. One Struct
# with both names, since msgspec allows a single untagged object type in a union.
CapabilityItem = Annotated[
    str | ConfiguredCapability,
    msgspec.Meta(description='A capability id, or {"ref": ..., "config": {...}} ({"id": ...} works too)'),
]


class AgentCapabilityConfig(msgspec.Struct, kw_only=True):
    """An agent's capability in responses, as Everruns' clients read it: `config` is null for a
    capability enabled with its defaults."""

    ref: str
    config: dict[str, Any] | None


# Configurations by capability id; a capability enabled without one is absent.
CapabilityConfigs = dict[str, dict[str, Any]]


class SetAgentCapabilities(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    capabilities: list[CapabilityItem]


class AgentCapabilities(msgspec.Struct, kw_only=True):
    capabilities: list[str]  # ids, in order
    capability_configs: CapabilityConfigs


TodoStatus = Literal["pending", "in_progress", "completed"]
TodoText = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class Todo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One item of the `stateless_todo_list` capability's list (also `write_todos` arguments)."""

    content: Annotated[TodoText, msgspec.Meta(description="What to do, imperative: 'Run the tests'")]
    active_form: Annotated[
        TodoText, msgspec.Meta(description="The same, while it is being done: 'Running the tests'")
    ] = msgspec.field(name="activeForm")
    status: TodoStatus


class SessionTodos(msgspec.Struct, kw_only=True):
    """A session's todo list: the latest successful `write_todos` call's list (empty if none)."""

    todos: list[Todo]
    updated_at: datetime | None  # when that call's result was stored
    message_id: uuid.UUID | None  # the tool message that holds it
