from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

# `llmsim` is Everruns' name for its simulator: the same provider as `simulator`, stored and
# returned as the client gave it (Everruns' own server and seed use `llmsim`).
ProviderType = Literal["openai", "anthropic", "azure_openai", "openai_compatible", "simulator", "llmsim"]
SIMULATOR_TYPES: tuple[ProviderType, ...] = ("simulator", "llmsim")
Status = Literal["active", "disabled"]
ModelKind = Literal["chat", "embedding"]
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
    shared: bool  # created by an admin: usable by everyone, changed only by admins (as MCP servers)
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
    # Everruns' UI sends the type with every edit.
    provider_type: ProviderType | UnsetType = UNSET
    base_url: BaseUrl | UnsetType | None = UNSET
    # null removes the key
    api_key: ApiKey | UnsetType | None = UNSET
    status: Status | UnsetType = UNSET
    settings: dict[str, Any] | UnsetType = UNSET


class ProviderSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    provider_type: ProviderType


# A model's profile, in the shape of Everruns' `ModelProfile` (models.dev's fields), filled from
# litellm's model table (services/model_profiles.py). Optional parts are left out when unknown.

# The efforts everruns-sdk 0.3.1 accepts (litellm's table also has "max", which it would refuse).
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
Modality = Literal["text", "image", "audio", "video", "pdf"]


class ReasoningEffortValue(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    value: ReasoningEffort


class ReasoningEffortConfig(msgspec.Struct, kw_only=True, frozen=True):
    default: ReasoningEffort
    values: list[ReasoningEffortValue]


class CostTier(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """Prices that apply once the context is above `above_tokens`."""

    above_tokens: int
    input: float
    output: float
    cache_read: float | None = None


class ModelCost(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    cost_tiers: list[CostTier] = msgspec.field(default_factory=list)


class ModelLimits(msgspec.Struct, kw_only=True, frozen=True):
    context: int
    output: int


class ModelModalities(msgspec.Struct, kw_only=True, frozen=True):
    input: list[Modality]
    output: list[Modality]


class ModelProfile(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    name: str
    family: str
    attachment: bool
    reasoning: bool
    temperature: bool
    tool_call: bool
    structured_output: bool
    open_weights: bool
    cost: ModelCost | None = None
    limits: ModelLimits | None = None
    modalities: ModelModalities | None = None
    reasoning_effort: ReasoningEffortConfig | None = None


# Where a model came from (Everruns: added by hand, found by syncing a provider, or built in).
ModelSource = Literal["manual", "discovered", "predefined"]
# The brand behind a model (everruns-sdk's `ModelVendor`, the values Everloop can tell).
ModelVendor = Literal["openai", "anthropic", "llmsim"]


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
    # Everruns' `LlmModelWithProvider` / `ModelWithProvider` fields (docs/api.md says what each
    # means here): its UI and SDK read the provider flat, and the profile.
    provider_name: str
    provider_type: ProviderType
    enabled: bool
    healthy: bool
    is_favorite: bool
    source: ModelSource
    kind: ModelKind
    model_vendor: ModelVendor | None
    profile: ModelProfile | None
    shared: bool  # its provider is shared: only an admin may change it
    created_at: datetime
    updated_at: datetime


class CreateModel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model_id: ShortText
    display_name: ShortText | None = None
    capabilities: list[str] = msgspec.field(default_factory=list)
    is_default: bool = False
    status: Status = "active"
    settings: dict[str, Any] = msgspec.field(default_factory=dict)
    # "embedding" for a model /v2/embeddings and knowledge bases may use (services/embedding_models).
    kind: ModelKind = "chat"


class UpdateModel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model_id: ShortText | UnsetType = UNSET
    display_name: ShortText | UnsetType = UNSET
    capabilities: list[str] | UnsetType = UNSET
    is_default: bool | UnsetType = UNSET
    status: Status | UnsetType = UNSET
    settings: dict[str, Any] | UnsetType = UNSET
    kind: ModelKind | UnsetType = UNSET
