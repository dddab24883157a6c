"""Opper's `/v2/models` (every model the caller may use) and `/v2/models/custom` (a name bound to one
of the caller's providers, a litellm model string and options), in the fields of the `opperai` SDK
1.7 (`ListLanguageModelsResponse`, `RegisterCustomModelRequest`, ...) plus Everloop's own
(`id`, `provider_id`, `kind`, ...), which the SDK's models keep as extra attributes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

# Request bodies ignore fields they do not know, as Opper's server does: a later 1.7.x SDK that
# sends one more field must not turn its calls into 422s (docs/v2.md, "Real clients beat our
# reading of a spec"). /v1's bodies still refuse them.

ModelKind = Literal["chat", "embedding"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=400)]
ApiKey = Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]


class LanguageModel(msgspec.Struct, kw_only=True):
    """One model the caller may use. `name` is what to pass as `model` (a custom model's name, else
    the litellm `provider/model` spelling); `id` names it unambiguously when two providers serve a
    model of the same name."""

    name: str
    hosting_provider: str  # the provider's type (openai, anthropic, azure_openai, simulator...)
    location: str  # Opper's region; Everloop's models have none: always "global"
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    id: uuid.UUID
    kind: ModelKind
    litellm_name: str
    model_id: str
    provider_id: uuid.UUID
    provider_name: str
    custom: bool  # a `/v2/models/custom` model of the caller's
    status: str


class RegisterCustomModel(msgspec.Struct, kw_only=True):
    """`identifier`: the litellm model string (`openai/gpt-4o-mini`, or the provider's own model id
    when `extra.provider_id` names the provider). `extra`: the model's options (see docs/v2.md);
    `extra.provider_id` and `extra.api_base` say where it is served. `api_key`: write-only, stored
    encrypted on a private provider made for this model."""

    name: Name
    identifier: Identifier
    extra: dict[str, Any] | None = None
    api_key: ApiKey | None = None
    kind: ModelKind = "chat"


class UpdateCustomModel(msgspec.Struct, kw_only=True):
    """Fields left out stay; `extra` replaces the options; `api_key` replaces (or with null drops)
    the model's own key."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    identifier: Identifier | msgspec.UnsetType = msgspec.UNSET
    extra: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    api_key: ApiKey | msgspec.UnsetType | None = msgspec.UNSET
    kind: ModelKind | msgspec.UnsetType = msgspec.UNSET


class CustomModel(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    identifier: str  # the litellm model string the calls use
    extra: dict[str, Any]  # the options (the binding keys provider_id / api_base are not kept here)
    kind: ModelKind
    provider_id: uuid.UUID
    api_key_set: bool  # the model has its own stored key (never returned)
    created_at: datetime
    updated_at: datetime
