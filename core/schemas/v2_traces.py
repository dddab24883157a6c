"""Opper's `/v2` spans, span metrics and traces (seed 000, "Traces & Spans", "Span Metrics"), over
the one trace store. A `/v2` span's `id` is the store's span id, its `trace_id` the trace's id (the
caller's strings: a UUID when Opper's clients make them, OTLP's hex or the loop's ids when another
writer did), `type` the span's kind and `meta` its metadata."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import msgspec

# Request bodies ignore fields they do not know, as Opper's server does: a later 1.7.x SDK that
# sends one more field must not turn its calls into 422s (docs/v2.md, "Real clients beat our
# reading of a spec"). /v1's bodies still refuse them.

T = TypeVar("T")

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
Kind = Annotated[str, msgspec.Meta(min_length=1, max_length=60)]
Score = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
MetricName = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
# Opper's clients send UUIDs; any id of the store (OTLP's hex, the loop's) is taken too.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class CreateSpan(msgspec.Struct, kw_only=True):
    """A span. Without `trace_id`, it joins its parent's trace, or starts a new trace (whose id
    answers in `trace_id`). Sending an `id` again replaces that span (a client may retry)."""

    name: Name
    id: Id | None = None
    trace_id: Id | None = None
    parent_id: Id | None = None
    type: Kind | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    input: Any = None
    output: Any = None
    error: str | None = None
    meta: dict[str, Any] | None = None


class UpdateSpan(msgspec.Struct, kw_only=True):
    """What to change (add output, end time, ...); a field left out stays, `null` clears it."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    type: Kind | msgspec.UnsetType = msgspec.UNSET
    start_time: datetime | msgspec.UnsetType | None = msgspec.UNSET
    end_time: datetime | msgspec.UnsetType | None = msgspec.UNSET
    input: Any | msgspec.UnsetType = msgspec.UNSET
    output: Any | msgspec.UnsetType = msgspec.UNSET
    error: str | msgspec.UnsetType | None = msgspec.UNSET
    meta: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET


class V2Span(msgspec.Struct, kw_only=True):
    id: str
    trace_id: str
    parent_id: str | None
    name: str
    type: str
    status: str
    start_time: datetime | None
    end_time: datetime | None
    duration_ms: int | None
    input: Any
    output: Any
    error: str | None
    meta: dict[str, Any]
    model: str | None
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    created_at: datetime
    updated_at: datetime


class Feedback(msgspec.Struct, kw_only=True):
    """Feedback on a span: stored as its `score` metric."""

    score: Score
    comment: str | None = None
    # A managed function's call span is saved into its function's dataset (api/v2_traces.py).
    save_to_dataset: bool = False


class CreateMetric(msgspec.Struct, kw_only=True):
    name: MetricName
    value: float
    comment: str | None = None


class UpdateMetric(msgspec.Struct, kw_only=True):
    name: MetricName | msgspec.UnsetType = msgspec.UNSET
    value: float | msgspec.UnsetType = msgspec.UNSET
    comment: str | msgspec.UnsetType | None = msgspec.UNSET


class Metric(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    span_id: str
    name: str
    value: float
    comment: str | None
    created_at: datetime
    updated_at: datetime


class FeedbackResult(Metric, kw_only=True):
    saved_to_dataset: bool = False


class TraceSummary(msgspec.Struct, kw_only=True):
    """A trace as Opper lists it (`total_tokens`: input + output of its spans)."""

    id: str
    name: str | None
    start_time: datetime | None
    end_time: datetime | None
    duration_ms: int | None
    status: str
    total_tokens: int


class V2Trace(TraceSummary, kw_only=True):
    input_tokens: int
    output_tokens: int
    total_cost: float
    span_count: int
    models_used: list[str]
    meta: dict[str, Any]
    session_id: str | None
    user_id: str | None
    created_at: datetime


class V2TraceWithSpans(V2Trace, kw_only=True):
    spans: list[V2Span]


class ListMeta(msgspec.Struct, kw_only=True):
    total_count: int


class V2Page(msgspec.Struct, Generic[T], kw_only=True):
    """Opper's list shape: `{data, meta: {total_count}}`."""

    data: Sequence[T]
    meta: ListMeta
