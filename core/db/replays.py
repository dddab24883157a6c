"""Replays of recorded traces (issue 14): 001's replay with per-span mutations and Opswald's replays
with a fork step and controls. One table for both: a replay is a durable Temporal workflow
(`replay-{id}`) whose progress, result and diffs are kept here, and whose re-run is stored as a new
trace (`result_trace_id`) linked to the original."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TimestampedModel
from core.db.traces import EMPTY_OBJECT


class Replay(TimestampedModel):
    __tablename__ = "replays"
    __table_args__ = (
        Index("ix_replays_owner_created", "owner_id", "created_at"),
        Index("ix_replays_trace_row_id", "trace_row_id"),
        # A fork's session: deleting a session sets this NULL (migration 0021).
        Index("ix_replays_session_id", "session_id", postgresql_where=text("session_id IS NOT NULL")),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # The original: its row while it exists (a deleted original keeps the replay, and its id).
    trace_row_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("traces.id", ondelete="SET NULL"))
    original_trace_id: Mapped[str] = mapped_column(String(255))
    # `mutations` (001: per-span changes) or `fork` (Opswald: modifications from a step on).
    kind: Mapped[str] = mapped_column(String(20))
    mode: Mapped[str] = mapped_column(String(20), default="auto", server_default="auto")
    # pending, running, paused, completed, failed, stopped.
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    # The request as given: 001's `mutations`, Opswald's `modifications` and `fork_from_step`.
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=EMPTY_OBJECT)
    created_by: Mapped[str | None] = mapped_column(String(255))
    current_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    total_steps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    result_trace_id: Mapped[str | None] = mapped_column(String(255))
    # diffs, final_output, total_cost, duration_ms, changes_from_original: whatever the kind reports.
    result: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=EMPTY_OBJECT)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A fork's session: a copy of the original's up to the fork step, whose turn runs from there.
    session_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"))
