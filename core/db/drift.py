"""Drift alerts (001, issue 14): a significant change of one metric of one scope (an agent, or a trace
name for outside apps) and model, between a recent window and a baseline window, found by the drift
schedule with a statistical test."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TimestampedModel


class DriftAlert(TimestampedModel):
    __tablename__ = "drift_alerts"
    __table_args__ = (
        # One alert per scope, model, metric and window: a schedule run repeated (a retried activity,
        # a second worker) finds the alert it made.
        UniqueConstraint(
            "owner_id",
            "project_id",
            "scope_kind",
            "scope",
            "model",
            "metric",
            "window_end",
            name="uq_drift_alerts_scope_metric_window",  # the convention's name is over 63 bytes
        ),
        # One open alert per drift: two runs at once (the schedule's and POST /v1/drift/run, with
        # different windows) cannot both open one; the second updates the first (services/drift.py).
        Index(
            "uq_drift_alerts_open",
            "owner_id",
            "project_id",
            "scope_kind",
            "scope",
            "model",
            "metric",
            unique=True,
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index("ix_drift_alerts_owner_created", "owner_id", "created_at"),
        Index("ix_drift_alerts_unresolved", "owner_id", postgresql_where=text("resolved_at IS NULL")),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    scope_kind: Mapped[str] = mapped_column(String(20))  # agent | trace_name
    scope: Mapped[str] = mapped_column(String(255))  # the agent's id, or the trace name
    model: Mapped[str] = mapped_column(String(255), default="", server_default="")  # "" for none
    # latency_ms, cost, tokens, error_rate, tool_mix, output_length
    metric: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))  # low | medium | high
    baseline_value: Mapped[float] = mapped_column(Float)
    current_value: Mapped[float] = mapped_column(Float)
    test: Mapped[str] = mapped_column(String(40))  # the statistical test that found it
    statistic: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    baseline_count: Mapped[int] = mapped_column(Integer)
    window_count: Mapped[int] = mapped_column(Integer)
    baseline_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    baseline_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What the two values do not say: the medians, the error counts, the tool mix's shares.
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
