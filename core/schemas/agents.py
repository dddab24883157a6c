from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from core.schemas.capabilities import AgentCapabilityConfig, CapabilityItem

AgentStatus = Literal["active", "archived"]
Name = Annotated[str, Meta(min_length=1)]
MaxIterations = Annotated[int, Meta(ge=1, le=1000, description="Reason steps per turn before it fails.")]

# Everruns runs every agent and session on a harness (a base configuration); this server has one,
# the built-in generic harness, under a fixed id in Everruns' `harness_<32 hex>` form (the form of
# its seeded ids). Requests may name it by id or by name; any other harness is a 400.
GENERIC_HARNESS_ID = "harness_00000000000000000000000000000001"
GENERIC_HARNESS_NAME = "generic"

# A tool name as the LLM APIs accept it (OpenAI's function-name rule, the strictest of them).
ToolName = Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$", description="1-64 letters, digits, _ or -")]


class ClientTool(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A client-side tool: declared to the model with the agent's capability tools; a call to one
    waits for the client's result (`POST /v1/sessions/{id}/tool-results`)."""

    name: ToolName
    description: Annotated[str, Meta(max_length=10 * 1024)]
    parameters: Annotated[dict[str, Any], Meta(description="JSON Schema of the arguments (an object)")]
    type: Literal["client_side"] = "client_side"
    display_name: str | None = None
    category: str | None = None


class InitialFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A starter file written into each new session's file tree (`content` is text, or base64 with
    `encoding: base64`)."""

    path: Annotated[str, Meta(min_length=1)]
    content: str
    encoding: Literal["text", "base64"] | None = None  # null: text
    is_readonly: bool | None = None


class StoredInitialFile(msgspec.Struct, kw_only=True):
    """An initial file as an agent keeps and shows it: the path normalised, the encoding named."""

    path: str
    content: str
    encoding: Literal["text", "base64"]
    is_readonly: bool = False


class Agent(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    display_name: str | None
    description: str | None
    system_prompt: str
    default_model_id: uuid.UUID | None
    harness_id: str
    tags: list[str]
    # In order; `config` is what was given (null: the defaults). Everruns' clients read this form.
    capabilities: list[AgentCapabilityConfig]
    tools: list[ClientTool]
    initial_files: list[StoredInitialFile]
    parallel_tool_calls: bool | None
    max_iterations: int
    status: AgentStatus
    created_at: datetime
    updated_at: datetime


class CreateAgent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    display_name: str | None = None
    description: str | None = None
    system_prompt: str = ""
    default_model_id: uuid.UUID | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    capabilities: list[CapabilityItem] = msgspec.field(default_factory=list)
    tools: list[ClientTool] = msgspec.field(default_factory=list)
    initial_files: list[InitialFile] = msgspec.field(default_factory=list)
    parallel_tool_calls: bool | None = None
    max_iterations: MaxIterations | None = 25  # null: the default (25)
    harness_id: str | None = None  # only the generic harness exists
    harness_name: str | None = None
    # A client-chosen id (the SDK's `apply`): `agent_<32 hex>` or a UUID. An agent of the caller's
    # with that id is replaced by this one (an upsert).
    id: str | None = None


class UpdateAgent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    display_name: str | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET
    system_prompt: str | UnsetType = UNSET
    default_model_id: uuid.UUID | UnsetType | None = UNSET
    tags: list[str] | UnsetType = UNSET
    capabilities: list[CapabilityItem] | UnsetType = UNSET
    tools: list[ClientTool] | UnsetType = UNSET
    initial_files: list[InitialFile] | UnsetType = UNSET
    parallel_tool_calls: bool | UnsetType | None = UNSET
    max_iterations: MaxIterations | UnsetType = UNSET
    status: AgentStatus | UnsetType = UNSET
    harness_id: str | UnsetType | None = UNSET
    harness_name: str | UnsetType | None = UNSET
