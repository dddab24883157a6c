from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

ProviderType = Literal["openai", "anthropic", "azure_openai", "openai_compatible", "simulator"]
Status = Literal["active", "disabled"]
ShortText = Annotated[str, Meta(min_length=1, max_length=200)]
BaseUrl = Annotated[str, Meta(pattern=r"^https?://[^\s/]+", max_length=2000)]
ApiKey = Annotated[str, Meta(min_length=1, max_length=10_000)]


class Provider(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    provider_type: ProviderType
    base_url: str | None
    api_key_set: bool
    status: Status
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class CreateProvider(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: ShortText
    provider_type: ProviderType
    base_url: BaseUrl | None = None
    api_key: ApiKey | None = None
    status: Status = "active"
    settings: dict[str, Any] = msgspec.field(default_factory=dict)


class UpdateProvider(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: ShortText | UnsetType = UNSET
    base_url: BaseUrl | UnsetType | None = UNSET
    # null removes the key
    api_key: ApiKey | UnsetType | None = UNSET
    status: Status | UnsetType = UNSET
    settings: dict[str, Any] | UnsetType = UNSET


class ProviderSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    provider_type: ProviderType


class Model(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    provider_id: uuid.UUID
    model_id: str
    display_name: str
    capabilities: list[str]
    is_default: bool
    status: Status
    settings: dict[str, Any]
    provider: ProviderSummary
    created_at: datetime
    updated_at: datetime


class CreateModel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model_id: ShortText
    display_name: ShortText | None = None
    capabilities: list[str] = msgspec.field(default_factory=list)
    is_default: bool = False
    status: Status = "active"
    settings: dict[str, Any] = msgspec.field(default_factory=dict)


class UpdateModel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model_id: ShortText | UnsetType = UNSET
    display_name: ShortText | UnsetType = UNSET
    capabilities: list[str] | UnsetType = UNSET
    is_default: bool | UnsetType = UNSET
    status: Status | UnsetType = UNSET
    settings: dict[str, Any] | UnsetType = UNSET
