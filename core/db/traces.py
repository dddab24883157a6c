"""The trace store: projects and their keys, traces, spans, span events and span metrics. One store
for every shape the specifications ask for (001's traces and spans, Opswald's steps, Opper's `/v2`
spans, OTLP): an agent's turn is a trace written by the loop, an outside app's trace is ingested.

Trace and span ids are the caller's strings (001 and OTLP send their own: "trace-001", 32 hex), so
each row has an internal UUID key and the caller's id is unique within the owner (traces) or the
trace (spans)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TimestampedModel
from core.schemas.traces import USAGE_COUNTED

EMPTY_OBJECT = text("'{}'::jsonb")
EMPTY_LIST = text("'[]'::jsonb")
# An agent turn's trace (only the loop sets `agent_id`) that has ended (its status is set by the
# turn's end) and is not exported yet: what OTLP out still owes its backend. Literal SQL, so the
# partial index `ix_traces_export_due` matches the queries that repeat it.
EXPORT_DUE = "exported_at IS NULL AND agent_id IS NOT NULL AND status <> 'unset'"


class Project(TimestampedModel):
    """Groups an account's traces (001). Each account has one default project, which holds its
    agents' turns."""

    __tablename__ = "projects"
    __table_args__ = (
        Index("ix_projects_owner_id", "owner_id"),
        # One default project per account.
        Index("uq_projects_default_owner", "owner_id", unique=True, postgresql_where=text("is_default")),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")


class ProjectKey(TimestampedModel):
    """A project key (`vgl_` + 64 hex, stored as SHA-256 like API keys): ingests and reads its
    project's traces and nothing else. Rotating deactivates the project's earlier keys."""

    __tablename__ = "project_keys"
    __table_args__ = (Index("ix_project_keys_project_id", "project_id"),)

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(20))  # shown: "vgl_" + 8 hex
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Trace(TimestampedModel):
    """A trace, with the aggregates the list filters read kept current as its spans arrive."""

    __tablename__ = "traces"
    __table_args__ = (
        UniqueConstraint("owner_id", "trace_id"),
        # The lists' order (`started_at DESC NULLS LAST, id DESC`: services/trace_queries, v2_spans)
        # read straight off the index, a page without sorting every match; the analytics' and
        # drift's start-time ranges scan them too. By project for a project key's reads.
        Index("ix_traces_owner_started_id", "owner_id", text("started_at DESC NULLS LAST"), text("id DESC")),
        Index(
            "ix_traces_project_started_id", "project_id", text("started_at DESC NULLS LAST"), text("id DESC")
        ),
        Index("ix_traces_owner_status", "owner_id", "status"),
        Index("ix_traces_owner_cost", "owner_id", "total_cost"),
        Index("ix_traces_owner_user", "owner_id", "user_id"),
        Index("ix_traces_session_id", "session_id"),
        Index("ix_traces_models_used", "models_used", postgresql_using="gin"),
        # OTLP out's retry sweep: the agent turns that ended and were not exported yet, by end time.
        Index("ix_traces_export_due", "ended_at", postgresql_where=text(EXPORT_DUE)),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    trace_id: Mapped[str] = mapped_column(String(255))  # the caller's id (an agent turn: its turn id)
    name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="unset", server_default="unset")
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=EMPTY_OBJECT
    )
    external_id: Mapped[str | None] = mapped_column(String(255))
    # An agent turn's session and agent; an outside app's session id (Opswald events) is kept as text.
    session_id: Mapped[str | None] = mapped_column(String(255))
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    user_id: Mapped[str | None] = mapped_column(String(255))  # the owner's id, or an outside app's user
    # Aggregates over the spans.
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    total_cost: Mapped[Decimal] = mapped_column(Numeric(18, 8), default=Decimal(0), server_default="0")
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    models_used: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=EMPTY_LIST)
    span_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    step_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # OTLP out: when an agent turn's spans were last taken by the OTLP backend (NULL: not yet; for a
    # trace that is no agent turn it stays NULL, such traces are never exported).
    exported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Span(TimestampedModel):
    """A span with the fields of all three specs. An agent turn's span may reference the stored
    event or message that holds its input/output instead of copying it (`source_*`); every API
    answers with the content."""

    __tablename__ = "spans"
    __table_args__ = (
        UniqueConstraint("trace_pk", "span_id"),
        Index("ix_spans_trace_start", "trace_pk", "start_time"),
        # GET /v1/spans' order (`start_time DESC NULLS LAST, id DESC`), for all and for one kind.
        Index("ix_spans_owner_start_id", "owner_id", text("start_time DESC NULLS LAST"), text("id DESC")),
        Index(
            "ix_spans_owner_kind_start_id",
            "owner_id",
            "kind",
            text("start_time DESC NULLS LAST"),
            text("id DESC"),
        ),
        # The analytics' LLM calls of a window's traces (services/analytics `calls`), index-only; roll-ups
        # (metadata `rollup: true`) restate their children's usage and are not calls (migration 0029).
        Index(
            "ix_spans_llm_calls",
            "trace_pk",
            postgresql_include=["model", "cost", "input_tokens", "output_tokens", "start_time"],
            postgresql_where=text("model IS NOT NULL AND " + USAGE_COUNTED),
        ),
        Index("ix_spans_owner_status", "owner_id", "status"),
        # GET /v1/events/{id}: an Opswald event is a span found by its id among the owner's.
        Index("ix_spans_owner_span_id", "owner_id", "span_id"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    trace_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("traces.id", ondelete="CASCADE"))
    span_id: Mapped[str] = mapped_column(String(255))
    parent_span_id: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(Text)
    # llm, tool, agent, chain, retrieval, user_input, or a custom kind kept as given.
    kind: Mapped[str] = mapped_column(String(60), default="custom", server_default="custom")
    status: Mapped[str] = mapped_column(String(20), default="unset", server_default="unset")
    input: Mapped[Any | None] = mapped_column(JSONB)
    output: Mapped[Any | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=EMPTY_OBJECT
    )
    start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # LLM spans.
    model: Mapped[str | None] = mapped_column(String(255))
    provider: Mapped[str | None] = mapped_column(String(255))
    input_tokens: Mapped[int | None] = mapped_column(BigInteger)
    output_tokens: Mapped[int | None] = mapped_column(BigInteger)
    cost: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))
    # An agent turn's span: the stored event / message its content lives in.
    source_event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("events.id", ondelete="SET NULL"))
    source_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )


class SpanEvent(TimestampedModel):
    __tablename__ = "span_events"
    __table_args__ = (Index("ix_span_events_span_pk", "span_pk"),)

    span_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("spans.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=EMPTY_OBJECT)


class SpanMetric(TimestampedModel):
    """Opper's span metrics (`/v2/spans/{id}/metrics`), and its feedback (a `score` metric)."""

    __tablename__ = "span_metrics"
    __table_args__ = (Index("ix_span_metrics_span_pk", "span_pk"),)

    span_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("spans.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[float] = mapped_column(Float)
    comment: Mapped[str | None] = mapped_column(Text)


class ExternalSession(TimestampedModel):
    """An outside app's session (a `traces.session_id` that is no agent session, e.g. Opswald's
    events) that was ended (`POST /v1/sessions/{id}/end`). Its traces make the session; this row
    only says it ended."""

    __tablename__ = "external_sessions"
    __table_args__ = (UniqueConstraint("owner_id", "session_id"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(255))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
