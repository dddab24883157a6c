from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from core.schemas.content import ContentPart, ToolCall, ToolResult

SessionStatus = Literal["started", "active", "idle"]


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: float


class Session(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    agent_id: uuid.UUID
    title: str | None
    tags: list[str]
    model_id: uuid.UUID | None
    status: SessionStatus
    usage: Usage
    created_at: datetime
    updated_at: datetime


class CreateSession(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    title: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    model_id: uuid.UUID | None = None


class UpdateSession(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    title: str | UnsetType | None = UNSET
    tags: list[str] | UnsetType = UNSET
    model_id: uuid.UUID | UnsetType | None = UNSET


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
