"""LLM providers (where to call, with an encrypted key) and the models they serve."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db.base import TimestampedModel
from core.schemas.llm import ProviderType, Status


class LlmProvider(TimestampedModel):
    __tablename__ = "llm_providers"
    __table_args__ = (Index("ix_llm_providers_owner_id", "owner_id"),)

    # None: created by an admin and shared (usable by everyone, editable by admins). Otherwise
    # private to that user, with its models.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))

    name: Mapped[str] = mapped_column(String(200))
    provider_type: Mapped[ProviderType] = mapped_column(String(40))
    base_url: Mapped[str | None] = mapped_column(Text)
    # Envelope-encrypted (core.crypto); never returned by the API.
    api_key_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[Status] = mapped_column(String(20), default="active", server_default="active")
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))

    models: Mapped[list[LlmModel]] = relationship(back_populates="provider", passive_deletes=True)


class LlmModel(TimestampedModel):
    __tablename__ = "llm_models"
    __table_args__ = (
        # At most one default model: the flag moves, it is never on two rows.
        Index("uq_llm_models_single_default", "is_default", unique=True, postgresql_where=text("is_default")),
        Index("ix_llm_models_provider_id", "provider_id"),
        Index("ix_llm_models_alias", "alias", postgresql_where=text("alias IS NOT NULL")),
        CheckConstraint("kind IN ('chat', 'embedding')", name="kind"),
    )

    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("llm_providers.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(200))
    capabilities: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    status: Mapped[Status] = mapped_column(String(20), default="active", server_default="active")
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    # What it does: "chat" or "embedding" (the /v2 embeddings and knowledge bases take the latter).
    kind: Mapped[str] = mapped_column(String(20), default="chat", server_default="chat")
    # A /v2 custom model's name (`/v2/models/custom`), unique among its owner's models (services).
    alias: Mapped[str | None] = mapped_column(String(200))

    provider: Mapped[LlmProvider] = relationship(back_populates="models", lazy="joined")
