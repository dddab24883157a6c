"""Golden tests (issue 14, Opswald): a recorded trace pinned with the outcome it must keep, and runs
that replay some of them with modifications and judge each (docs/golden_tests.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TimestampedModel
from core.db.traces import EMPTY_OBJECT

EMPTY_LIST = text("'[]'::jsonb")


class GoldenTest(TimestampedModel):
    __tablename__ = "golden_tests"
    __table_args__ = (Index("ix_golden_tests_owner_created", "owner_id", "created_at"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # The pinned trace: its row while it exists (a run of a test whose trace is gone fails, saying so).
    trace_row_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("traces.id", ondelete="SET NULL"))
    trace_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=EMPTY_LIST)
    expected_outcome: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=EMPTY_OBJECT)
    created_by: Mapped[str | None] = mapped_column(String(255))


class GoldenRun(TimestampedModel):
    __tablename__ = "golden_runs"
    __table_args__ = (Index("ix_golden_runs_owner_created", "owner_id", "created_at"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # pending, running, completed (every test judged, passed or not), failed (the run itself broke).
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    test_ids: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=EMPTY_LIST)
    modifications: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=EMPTY_OBJECT)
    total_tests: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    passed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_by: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GoldenResult(TimestampedModel):
    """One test's verdict in a run (a copy of the test's name and trace: the test may be deleted)."""

    __tablename__ = "golden_results"
    __table_args__ = (UniqueConstraint("run_id", "position", name="uq_golden_results_run_position"),)

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("golden_runs.id", ondelete="CASCADE"))
    test_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("golden_tests.id", ondelete="SET NULL"))
    test_name: Mapped[str] = mapped_column(String(255))
    trace_id: Mapped[str] = mapped_column(String(255))
    replay_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("replays.id", ondelete="SET NULL"))
    position: Mapped[int] = mapped_column(Integer)
    # pending, running, passed, failed (a check failed), error (the replay could not run).
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default=EMPTY_LIST)
    diff: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default=EMPTY_LIST)
    final_output: Mapped[str | None] = mapped_column(Text)
    cost: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
