from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from core.schemas.agents import ClientTool, InitialFile
from core.schemas.capabilities import AgentCapabilityConfig, CapabilityItem
from core.schemas.content import ContentPart, ToolCall, ToolResult

# `waitingfortoolresults`: a turn waits for the client's results of client-side tool calls (as Everruns
# names it, one word).
SessionStatus = Literal["started", "active", "idle", "waitingfortoolresults"]


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: float


# A BCP 47 language tag such as `uk-UA`: what a session's replies should be written in.
Locale = Annotated[str, Meta(pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$", max_length=35)]


class Session(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    agent_id: uuid.UUID
    harness_id: str  # always the built-in generic harness (core.schemas.agents.GENERIC_HARNESS_ID)
    organization_id: str  # one organization per account: `org_` + the owner's user id in hex
    title: str | None
    tags: list[str]
    model_id: uuid.UUID | None
    locale: str | None
    parallel_tool_calls: bool | None
    tools: list[ClientTool]  # the session's own client-side tools, beside the agent's
    capabilities: list[AgentCapabilityConfig]
    status: SessionStatus
    usage: Usage
    started_at: datetime | None  # when its first turn started
    finished_at: datetime | None  # when its last turn ended; null while one runs
    # When it was ended (`POST /v1/sessions/{id}/end`): it takes no new messages since.
    ended_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class CreateSession(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    title: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    model_id: uuid.UUID | None = None  # null: the agent's default_model_id
    locale: Locale | None = None
    parallel_tool_calls: bool | None = None
    tools: list[ClientTool] = msgspec.field(default_factory=list)
    # Written into the session's files after the agent's own (a path in both: this one wins).
    initial_files: list[InitialFile] | None = None
    capabilities: list[CapabilityItem] = msgspec.field(default_factory=list)  # on top of the agent's
    harness_id: str | None = None  # only the generic harness exists
    harness_name: str | None = None


class CreateFlatSession(CreateSession, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/sessions`: the agent is named in the body, by id or by name (exactly one)."""

    agent_id: str | None = None  # a UUID, or Everruns' `agent_<32 hex>` form of one
    agent_name: str | None = None


class UpdateSession(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    title: str | UnsetType | None = UNSET
    tags: list[str] | UnsetType = UNSET
    model_id: uuid.UUID | UnsetType | None = UNSET
    locale: Locale | UnsetType | None = UNSET
    parallel_tool_calls: bool | UnsetType | None = UNSET


class Reasoning(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    effort: Literal["low", "medium", "high"] | None = None


class Controls(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model_id: uuid.UUID | None = None
    reasoning: Reasoning | None = None


class MessageInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    role: Literal["user"] = "user"
    content: list[ContentPart]


class CreateMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    message: MessageInput
    controls: Controls | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] = msgspec.field(default_factory=list)


MessageRole = Literal["user", "agent", "tool_result"]


class Message(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    session_id: uuid.UUID
    sequence: int
    role: MessageRole
    content: list[ContentPart]
    controls: Controls | None
    metadata: dict[str, Any] | None
    tags: list[str]
    created_at: datetime
    # Convenience arrays Everruns clients read; null where the message has none.
    tool_calls: list[ToolCall] | None
    tool_results: list[ToolResult] | None
