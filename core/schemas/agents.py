from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from core.schemas.capabilities import CapabilityItem

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
    capabilities: list[str]  # ids, in order
    # The configurations given, by capability id (a capability enabled without one is absent).
    capability_configs: dict[str, dict[str, Any]]
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
    capabilities: list[CapabilityItem] = msgspec.field(default_factory=list)
    max_iterations: MaxIterations = 25


class UpdateAgent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    system_prompt: str | UnsetType = UNSET
    default_model_id: uuid.UUID | UnsetType | None = UNSET
    tags: list[str] | UnsetType = UNSET
    capabilities: list[CapabilityItem] | UnsetType = UNSET
    max_iterations: MaxIterations | UnsetType = UNSET
    status: AgentStatus | UnsetType = UNSET
