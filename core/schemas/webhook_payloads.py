"""The bodies webhooks deliver: one Struct per event, a union tagged by `event`.

The database triggers (migration 0027) build the bodies in SQL, in the transaction of the change
that causes them, and `services.webhooks.ping` builds `ping`'s here. These Structs are the contract
the SQL must keep: the deliveries API answers each stored body decoded through `WebhookBody`, and the
tests decode every body a webhook receives (unknown fields refused, so a field the SQL adds or drops
fails them). docs/webhooks.md documents the same table.

A session event's `data` is the stored event's data (`core.schemas.events`, the same fields the
events API sends) with five fields the trigger adds: `SessionEventData`'s.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec


class _Data(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A body's `data`."""


class SessionEventData(_Data):
    """What the trigger adds to a session event's data: which session and agent, and the stored
    event's id, sequence and time (a receiver can fetch the event, or the events after it)."""

    session_id: uuid.UUID
    agent_id: uuid.UUID
    event_id: uuid.UUID
    sequence: int
    ts: datetime


class TurnCompletedData(SessionEventData):
    turn_id: str
    iterations: int
    duration_ms: int


class TurnFailedData(SessionEventData):
    turn_id: str
    error: str | None
    error_code: str | None


class ToolApprovalRequestedData(SessionEventData):
    tool_call_id: str
    tool_name: str
    arguments: dict[str, Any]
    approval_timeout_s: float | None  # null: it waits as long as it takes


class SessionIdledData(SessionEventData):
    turn_id: str
    iterations: int


class TraceCompletedData(_Data):
    """Opswald's (seed 002)."""

    trace_id: str
    session_id: str | None
    duration_ms: int | None
    total_cost: float
    status: Literal["completed"]


class TraceError(_Data):
    """The trace's first failed span: its kind as `{kind}_error` (`error` when no span failed, the
    trace's own status did), its error, and its place among the trace's spans by start time."""

    type: str
    message: str | None
    step: int | None


class TraceErrorData(_Data):
    """Opswald's (seed 002)."""

    trace_id: str
    session_id: str | None
    status: Literal["error"]
    error: TraceError


class ReplayCompletedData(_Data):
    replay_id: uuid.UUID
    kind: Literal["mutations", "fork"]
    status: Literal["completed", "failed", "stopped"]
    original_trace_id: str
    result_trace_id: str | None
    session_id: uuid.UUID | None  # a fork's session
    error: str | None


class GoldenRunCompletedData(_Data):
    run_id: uuid.UUID
    status: Literal["completed", "failed"]  # failed: the run itself broke, not a test
    total_tests: int
    passed: int
    failed: int
    error: str | None


class PingData(_Data):
    webhook_id: uuid.UUID


class Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="event"):
    """What every body has besides `data`: its event (the tag) and when it was made (UTC, seconds)."""

    timestamp: datetime


class TurnCompletedBody(Body, tag="turn.completed"):
    data: TurnCompletedData


class TurnFailedBody(Body, tag="turn.failed"):
    data: TurnFailedData


class ToolApprovalRequestedBody(Body, tag="tool.approval_requested"):
    data: ToolApprovalRequestedData


class SessionIdledBody(Body, tag="session.idled"):
    data: SessionIdledData


class TraceCompletedBody(Body, tag="trace.completed"):
    data: TraceCompletedData


class TraceErrorBody(Body, tag="trace.error"):
    data: TraceErrorData


class ReplayCompletedBody(Body, tag="replay.completed"):
    data: ReplayCompletedData


class GoldenRunCompletedBody(Body, tag="golden_test_run.completed"):
    data: GoldenRunCompletedData


class PingBody(Body, tag="ping"):
    data: PingData


WebhookBody = (
    TurnCompletedBody
    | TurnFailedBody
    | ToolApprovalRequestedBody
    | SessionIdledBody
    | TraceCompletedBody
    | TraceErrorBody
    | ReplayCompletedBody
    | GoldenRunCompletedBody
    | PingBody
)


def decode(body: bytes) -> WebhookBody:
    """A delivered body; a ValidationError if it is not one of the above exactly."""
    decoded: WebhookBody = msgspec.json.decode(body, type=WebhookBody)
    return decoded


def convert(payload: dict[str, Any]) -> WebhookBody:
    """A stored body (the `payload` column); a ValidationError if it is not one of the above."""
    converted: WebhookBody = msgspec.convert(payload, WebhookBody)
    return converted


def event_of(body: type[Body]) -> str:
    tag = body.__struct_config__.tag
    assert isinstance(tag, str), body
    return tag
