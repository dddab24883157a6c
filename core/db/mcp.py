"""MCP servers: where an MCP server is (a URL with headers, or a command to run), and the tools it
listed last (the cache a turn reads, so a turn never waits on the server to learn its tools)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TimestampedModel
from core.schemas.mcp import Transport


class McpServer(TimestampedModel):
    __tablename__ = "mcp_servers"
    __table_args__ = (Index("ix_mcp_servers_owner_id", "owner_id"),)

    # None: created by an admin and shared (usable by everyone, editable by admins). Otherwise
    # private to that user.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))

    name: Mapped[str] = mapped_column(String(200))
    transport: Mapped[Transport] = mapped_column(String(20))
    url: Mapped[str | None] = mapped_column(Text)
    # {header name: value} as JSON, envelope-encrypted (core.crypto); never returned by the API.
    headers_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Header names only, to show which are set.
    header_names: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    command: Mapped[str | None] = mapped_column(Text)
    args: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    tool_prefix: Mapped[str] = mapped_column(String(32), default="", server_default="")
    timeout_s: Mapped[float] = mapped_column(Float, default=60.0, server_default="60")
    # The last successful listing: [{name (as the LLM sees it), remote_name, description, input_schema}].
    tools: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    tools_refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Why the last listing failed (None when it succeeded); the cached tools stay.
    tools_error: Mapped[str | None] = mapped_column(Text)
