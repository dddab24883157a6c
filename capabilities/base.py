"""What a capability is: prompt additions, a per-agent configuration, and tools; a tool is typed
params plus an async handler."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec

from core.net import NetPolicy
from core.schemas.capabilities import Capability, CapabilityStatus, ToolDefinition

if TYPE_CHECKING:
    from core.db import Database


class ToolError(Exception):
    """A tool failed in a way the model should be told about (it becomes a tool result with an error)."""


class CapabilityConfig(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True, frozen=True
):
    """The base of every capability's per-agent configuration (`PUT /v1/agents/{id}/capabilities`
    with `{"id": ..., "config": {...}}`). A capability without settings uses it as it is: then only
    `{}` is valid. Settings every capability shares belong here. Stored as `to_builtins` of the
    validated struct, so only values that differ from the defaults."""

    require_approval: Annotated[
        bool | list[str],
        msgspec.Meta(
            description="Tool calls wait for a person's approval: true for all of this capability's "
            "tools, or a list of tool names"
        ),
    ] = False
    approval_timeout_s: (
        Annotated[
            float,
            msgspec.Meta(
                gt=0,
                le=30 * 86400,
                description="Deny a call nobody approved within this many seconds (default: wait forever)",
            ),
        ]
        | None
    ) = None


C = TypeVar("C", bound=CapabilityConfig)
KnowledgeSearch = Callable[[str, str, int], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    session_id: uuid.UUID
    agent_id: uuid.UUID
    # The agent's configuration of the capability that offers the tool (its config type).
    config: CapabilityConfig = field(default_factory=CapabilityConfig)
    # Which addresses a tool that reaches the network may connect to.
    network: NetPolicy = field(default_factory=NetPolicy)
    # The database, for tools that keep state there (session_file_system); None outside a worker.
    db: Database | None = None
    # knowledge_search's way to the agent owner's knowledge bases (base id or name, query, top_k ->
    # results), which live in services/ (above this layer); None outside a worker.
    knowledge_search: KnowledgeSearch | None = None

    def config_as(self, kind: type[C]) -> C:
        """The configuration as the capability's own type (the registry guarantees it)."""
        if isinstance(self.config, kind):
            return self.config
        return kind()


Handler = Callable[[Any, ToolContext], Awaitable[Any]]


@dataclass(frozen=True, kw_only=True)
class Tool:
    name: str
    description: str
    params: type[msgspec.Struct]
    handler: Handler
    require_approval: bool = False  # always ask a person first, whatever the agent's configuration

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
    config: type[CapabilityConfig] = CapabilityConfig
    # Its tools finish in milliseconds, touch nothing outside the worker and may run again with the
    # same result: the loop runs their calls as local activities (about 30 ms less a tool step,
    # docs/loop.md). A local activity cannot heartbeat and a crash before the workflow task completes
    # runs it again, so never for a tool that waits on the network or has effects.
    local: bool = False

    def parse_config(self, raw: dict[str, Any] | None) -> CapabilityConfig:
        """Validates a configuration; raises msgspec.ValidationError naming the field."""
        config = msgspec.convert(raw or {}, self.config)
        if isinstance(config.require_approval, list):
            names = {tool.name for tool in self.tools}
            if unknown := [n for n in config.require_approval if n not in names]:
                raise msgspec.ValidationError(
                    f"{self.id} has no tool {', '.join(map(repr, unknown))} - at `$.require_approval`"
                )
        return config

    def approval(self, tool: Tool, config: CapabilityConfig) -> tuple[bool, float | None]:
        """Whether a call of `tool` waits for a person, and for how long at most."""
        wanted = config.require_approval
        required = (
            tool.require_approval or wanted is True or (isinstance(wanted, list) and tool.name in wanted)
        )
        return required, config.approval_timeout_s if required else None

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
            config_schema=json_schema(self.config),
        )


def json_schema(params: type[msgspec.Struct]) -> dict[str, Any]:
    """The params struct as one self-contained JSON Schema object (what LLM tool APIs expect):
    nested structs are written inline, since some providers do not follow `$ref`; only a
    recursive one keeps a `$defs` entry.

    Made once per struct (every `reason` step asks for its agent's tools) and handed out as a fresh
    copy each time, so a caller that changes its copy changes nobody else's."""
    decoded: dict[str, Any] = msgspec.json.decode(_schema_json(params))
    return decoded


@functools.cache
def _schema_json(params: type[msgspec.Struct]) -> bytes:
    return msgspec.json.encode(_inlined_schema(params))


def _inlined_schema(params: type[msgspec.Struct]) -> dict[str, Any]:
    schema = msgspec.json.schema(params)
    defs: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                return inline({**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}, (*seen, name))
            kept.add(name)
            return node
        return {key: inline(value, seen) for key, value in node.items()}

    kept: set[str] = set()
    top = inline(schema, ())
    top.setdefault("properties", {})
    if kept:
        top["$defs"] = {name: defs[name] for name in sorted(kept)}
    return dict(top)
