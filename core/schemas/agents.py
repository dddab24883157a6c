from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

AgentStatus = Literal["active", "archived"]
Name = Annotated[str, Meta(min_length=1)]
MaxIterations = Annotated[int, Meta(ge=1, le=1000, description="Reason steps per turn before it fails.")]


class Agent(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    description: str | None
    system_prompt: str
    default_model_id: uuid.UUID | None
    tags: list[str]
    capabilities: list[str]
    max_iterations: int
    status: AgentStatus
    created_at: datetime
    updated_at: datetime


class CreateAgent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    description: str | None = None
    system_prompt: str = ""
    default_model_id: uuid.UUID | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    capabilities: list[str] = msgspec.field(default_factory=list)
    max_iterations: MaxIterations = 25


class UpdateAgent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    system_prompt: str | UnsetType = UNSET
    default_model_id: uuid.UUID | UnsetType | None = UNSET
    tags: list[str] | UnsetType = UNSET
    capabilities: list[str] | UnsetType = UNSET
    max_iterations: MaxIterations | UnsetType = UNSET
    status: AgentStatus | UnsetType = UNSET
