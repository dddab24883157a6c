"""The `/v1` trace API's requests and answers: 001's projects, batch ingestion, traces and spans, and
Opswald's trace fields and step list, carried together in one shape (docs/traces.md says which field
means what where the two specs differ)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec

# ---------------------------------------------------------------------------------------- projects


class CreateProject(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    description: str | None = None


class ProjectKeyInfo(msgspec.Struct, kw_only=True):
    """A key as listed: its prefix only (the full key is shown once, on create or rotate)."""

    id: uuid.UUID
    prefix: str
    active: bool
    created_at: datetime
    last_used_at: datetime | None


class Project(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: uuid.UUID
    name: str
    description: str | None
    is_default: bool
    created_at: datetime
    updated_at: datetime
    keys: list[ProjectKeyInfo]
    # The full key: only in the answer to POST /v1/projects.
    api_key: str | None = None


class ProjectList(msgspec.Struct, kw_only=True):
    projects: list[Project]
    total: int


class RotatedKey(msgspec.Struct, kw_only=True):
    key: str


# --------------------------------------------------------------------------------------- ingestion

IngestStatus = Literal["unset", "ok", "error"]


class IngestEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    timestamp: datetime | None = None
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)


class IngestSpan(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """001's span, with the LLM fields of the store (model, provider, tokens, cost) as extras."""

    span_id: str
    trace_id: str
    name: str
    parent_span_id: str | None = None
    kind: str = "custom"
    status: IngestStatus = "unset"
    input: Any = None
    output: Any = None
    error: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    events: list[IngestEvent] = msgspec.field(default_factory=list)
    start_time: datetime | None = None
    end_time: datetime | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None


class IngestBatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    spans: list[IngestSpan]
    # A project's id or name; the caller's default project when absent (a project key: its own).
    project_id: str | None = None
    trace_name: str | None = None
    trace_metadata: dict[str, Any] | None = None
    external_id: str | None = None


class Ingested(msgspec.Struct, kw_only=True):
    trace_id: str
    span_count: int


class AddEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)
    timestamp: datetime | None = None


class SpanEventOut(msgspec.Struct, kw_only=True):
    name: str
    timestamp: datetime
    attributes: dict[str, Any]


# ------------------------------------------------------------------------------------------ traces


class Tokens(msgspec.Struct, kw_only=True):
    input: int
    output: int


class SpanOut(msgspec.Struct, kw_only=True):
    span_id: str
    trace_id: str
    parent_span_id: str | None
    name: str
    kind: str
    status: str
    input: Any
    output: Any
    error: str | None
    metadata: dict[str, Any]
    events: list[SpanEventOut]
    start_time: datetime | None
    end_time: datetime | None
    duration_ms: int | None
    model: str | None
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    created_at: datetime
    updated_at: datetime


class Step(msgspec.Struct, kw_only=True):
    """Opswald's step: one non-container span, numbered in time order."""

    id: str
    step_number: int
    type: str  # llm_call | tool_call | user_input | the span's kind
    name: str
    status: str
    timestamp: datetime | None
    input: Any
    output: Any
    error: str | None
    duration_ms: int
    cost: float
    tokens: Tokens
    model: str | None


class TraceFields(msgspec.Struct, kw_only=True):
    # 001
    trace_id: str
    name: str | None
    status: str  # ok | error | unset (001); Opswald's word is in run_status
    metadata: dict[str, Any]
    external_id: str | None
    project_id: uuid.UUID
    start_time: datetime | None
    end_time: datetime | None
    created_at: datetime
    updated_at: datetime
    span_count: int
    # Opswald
    id: str
    run_status: str  # completed | failed | running
    session_id: str | None
    agent_id: uuid.UUID | None
    user_id: str | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: int | None
    total_cost: float
    total_tokens: Tokens
    models_used: list[str]
    step_count: int
    errors: int


class TraceSummary(TraceFields, kw_only=True):
    steps: int  # Opswald's list: the step count


class TraceDetail(TraceFields, kw_only=True):
    spans: list[SpanOut]
    steps: list[Step]  # Opswald's detail: the numbered step list


class Pagination(msgspec.Struct, kw_only=True):
    has_more: bool
    next_cursor: str | None


class TraceList(msgspec.Struct, kw_only=True):
    traces: list[TraceSummary]
    total: int
    offset: int
    limit: int
    has_more: bool
    pagination: Pagination


class UpdateTrace(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # 001's words or Opswald's (completed = ok, failed = error, running = unset).
    status: Literal["ok", "error", "unset", "completed", "failed", "running"] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None


class TraceDeleted(msgspec.Struct, kw_only=True):
    deleted: bool
    trace_id: str


class SpanList(msgspec.Struct, kw_only=True):
    spans: list[SpanOut]
    total: int
    offset: int
    limit: int
