"""Opswald's events, sessions and analytics (seed 002) and Opper's usage analytics (seed 000), over
the one trace store (docs/traces.md says how events group into traces and which session is which)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

import msgspec

from core.schemas.sessions import Session

# ------------------------------------------------------------------------------------------ events


class CreateEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An event of an outside app's session: it becomes one step (span) of a trace."""

    event_type: str
    session_id: str | None = None
    # Where the event goes when the caller says so; else its session's trace (docs/traces.md).
    trace_id: str | None = None
    # The caller's id for the event (either name): sent again, it updates the same span.
    event_id: str | None = None
    id: str | None = None
    user_id: str | None = None
    parent_id: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    timestamp: datetime | None = None


class EventCreated(msgspec.Struct, kw_only=True):
    event_id: str
    processed: bool
    trace_id: str
    session_id: str | None


class EventOut(msgspec.Struct, kw_only=True):
    event_id: str
    event_type: str
    session_id: str | None
    trace_id: str
    user_id: str | None
    parent_id: str | None
    data: dict[str, Any]
    timestamp: datetime | None
    processed: bool
    status: str


# ---------------------------------------------------------------------------------------- sessions

OpswaldSessionStatus = Literal["active", "completed"]


class OpswaldSession(msgspec.Struct, kw_only=True):
    """A session in Opswald's shape: an agent session (`kind` agent) or an outside app's (`external`)."""

    session_id: str
    kind: Literal["agent", "external"]
    user_id: str | None
    agent_id: uuid.UUID | None
    started_at: datetime | None
    last_activity: datetime | None
    ended_at: datetime | None
    status: OpswaldSessionStatus
    active: bool
    trace_count: int
    total_cost: float
    total_tokens: int


class ExternalSessionDetail(OpswaldSession, kw_only=True):
    """`GET /v1/sessions/{id}` for an outside app's session: its traces, newest first (at most 100)."""

    trace_ids: list[str]


class AgentSessionDetail(Session, kw_only=True):
    """`GET /v1/sessions/{id}` for an agent session: Everruns' session, and Opswald's fields beside
    it. `status` stays Everruns' (`idle`, `running`, ...: its clients read it); Opswald's
    `active`/`completed` is `active` and `ended_at` (docs/traces.md, "Opswald's sessions")."""

    session_id: str
    kind: Literal["agent"] = "agent"
    user_id: str
    last_activity: datetime | None
    active: bool
    trace_count: int
    total_cost: float
    total_tokens: int
    trace_ids: list[str]  # its turns' traces, newest first (at most 100)


class SessionEnded(msgspec.Struct, kw_only=True):
    session_id: str
    kind: Literal["agent", "external"]
    status: OpswaldSessionStatus
    ended_at: datetime
    # An agent session: whether a running turn was stopped.
    turn_cancelled: bool


# --------------------------------------------------------------------------------------- analytics


class UsageBucket(msgspec.Struct, kw_only=True):
    date: date
    traces: int
    cost: float
    tokens: int


class ModelUsage(msgspec.Struct, kw_only=True):
    model: str
    usage: float  # the model's share of the period's LLM calls, 0..1
    cost: float
    calls: int
    tokens: int


class Usage(msgspec.Struct, kw_only=True):
    period: str
    group_by: str
    start: datetime
    end: datetime
    total_traces: int
    total_cost: float
    total_tokens: int
    daily: list[UsageBucket]
    top_models: list[ModelUsage]


class CostTrends(msgspec.Struct, kw_only=True):
    daily_average: float
    weekly_growth: float | None


class CostAnalytics(msgspec.Struct, kw_only=True):
    period: str
    start: datetime
    end: datetime
    total_cost: float
    cost_by_model: dict[str, float]
    cost_by_user: dict[str, float]
    trends: CostTrends


class V2UsageRow(msgspec.Struct, kw_only=True):
    time_bucket: datetime
    count: int
    total_tokens: int
    input_tokens: int
    output_tokens: int
    cost: float
    model: str | None = None


class V2Usage(msgspec.Struct, kw_only=True):
    data: list[V2UsageRow]
    meta: dict[str, Any]


class SessionListing(msgspec.Struct, kw_only=True):
    """`GET /v1/sessions`: Everruns' page of agent sessions (`data`, `total`, `offset`, `limit`) and
    Opswald's `sessions` (agent and external sessions, in its shape) in one answer."""

    data: list[Session]
    total: int
    offset: int
    limit: int
    sessions: list[OpswaldSession]
    sessions_total: int
