"""Agents: a prompt, a default model, ordered capabilities."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TimestampedModel
from core.schemas.agents import AgentStatus


class Agent(TimestampedModel):
    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_status", "status"), Index("ix_agents_owner_id", "owner_id"))

    # Sessions, messages, events and files belong to the agent's owner through the agent.
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))

    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    system_prompt: Mapped[str] = mapped_column(Text, default="", server_default="")
    default_model_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("llm_models.id", ondelete="RESTRICT")
    )
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    capabilities: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    # Per-agent capability configuration: {capability id: validated config, defaults left out}.
    capability_configs: Mapped[dict[str, dict[str, Any]]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    max_iterations: Mapped[int] = mapped_column(Integer, default=25, server_default="25")
    display_name: Mapped[str | None] = mapped_column(Text)
    # Client-side tools ([{name, description, parameters}]): declared to the model; a call to one
    # waits for the client's result.
    tools: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    # Files ([{path, content, encoding, is_readonly}]) written into each new session's file tree.
    initial_files: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    parallel_tool_calls: Mapped[bool | None] = mapped_column(Boolean)
    status: Mapped[AgentStatus] = mapped_column(String(20), default="active", server_default="active")
