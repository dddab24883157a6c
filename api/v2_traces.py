"""Opper's `/v2` spans, span feedback and metrics, and traces (seed 000). Errors under `/v2` are
Opper's `{"detail": "..."}` (422 for a body that fails validation: api/errors.py), lists
`{data, meta: {total_count}}`, deletes 204."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, v2_error_responses
from api.pagination import PageParams
from core.errors import InvalidInput, NotFound
from core.identity import Identity
from core.schemas import v2_functions
from core.schemas import v2_traces as schema
from services import datasets, v2_spans

SpanId = FromPath[str]


class V2SpanController(Controller):
    path = "/v2/spans"
    tags = ["v2-spans"]
    security = AUTHENTICATED

    @post(operation_id="v2CreateSpan", responses=v2_error_responses(401, 422))
    async def create_span(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        data: Annotated[schema.CreateSpan, Body()],
    ) -> schema.V2Span:
        """Create a span. Without `trace_id` it joins its parent's trace or starts a new one (the
        answer's `trace_id`); a root span (no `parent_id`) names its trace. `type` is the span's
        kind (`llm`, `tool`, ... or any other, kept as given). Sending an `id` again replaces that
        span."""
        return await v2_spans.create_span(db_session, who, data)

    @get("/{span_id:str}", operation_id="v2GetSpan", responses=v2_error_responses(401, 404))
    async def get_span(
        self, db_session: NamedDependency[AsyncSession], who: NamedDependency[Identity], span_id: SpanId
    ) -> schema.V2Span:
        """A span, with its content (an agent turn's span answers with its stored event's)."""
        return await v2_spans.get_span(db_session, who, span_id)

    @patch("/{span_id:str}", operation_id="v2UpdateSpan", responses=v2_error_responses(401, 404, 422))
    async def update_span(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        span_id: SpanId,
        data: Annotated[schema.UpdateSpan, Body()],
    ) -> schema.V2Span:
        """Change a span (add its output, its end time, ...): fields left out stay."""
        return await v2_spans.update_span(db_session, who, span_id, data)

    @delete("/{span_id:str}", operation_id="v2DeleteSpan", responses=v2_error_responses(401, 404))
    async def delete_span(
        self, db_session: NamedDependency[AsyncSession], who: NamedDependency[Identity], span_id: SpanId
    ) -> None:
        """Delete a span with its metrics (its child spans stay); the trace's totals follow."""
        await v2_spans.delete_span(db_session, who, span_id)

    @post(
        "/{span_id:str}/feedback",
        operation_id="v2SpanFeedback",
        responses=v2_error_responses(401, 404, 422),
    )
    async def feedback(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        span_id: SpanId,
        data: Annotated[schema.Feedback, Body()],
    ) -> schema.FeedbackResult:
        """Feedback on a span: a `score` from 0 to 1 and a comment, stored as the span's `score`
        metric. `save_to_dataset: true` on a managed function's call span also saves the call as an
        example in the function's dataset (as `save_examples` does; `saved_to_dataset` says whether
        it was: another span has no dataset, and the feedback is stored anyway)."""
        metric = await v2_spans.add_metric(
            db_session, who, span_id, v2_spans.FEEDBACK_METRIC, data.score, data.comment
        )
        saved = False
        if data.save_to_dataset:
            try:
                await datasets.save_span(db_session, who, span_id)
                saved = True
            except (InvalidInput, NotFound):  # no function's call, or its function is gone
                await db_session.rollback()
        fields = {f: getattr(metric, f) for f in metric.__struct_fields__}
        return schema.FeedbackResult(**fields, saved_to_dataset=saved)

    @post(
        "/{span_id:str}/save_examples",
        operation_id="v2SaveSpanExamples",
        responses=v2_error_responses(401, 404),
    )
    async def save_examples(
        self, db_session: NamedDependency[AsyncSession], who: NamedDependency[Identity], span_id: SpanId
    ) -> v2_functions.SavedExample:
        """Save a call of a managed function (its span) as an example in that function's dataset:
        the call's input and output become an entry. 400 for a span that is not a function's call."""
        return await datasets.save_span(db_session, who, span_id)

    @post(
        "/{span_id:str}/metrics",
        operation_id="v2CreateSpanMetric",
        responses=v2_error_responses(401, 404, 422),
    )
    async def create_metric(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        span_id: SpanId,
        data: Annotated[schema.CreateMetric, Body()],
    ) -> schema.Metric:
        """Add a metric (`name`, numeric `value`, optional `comment`) to a span."""
        return await v2_spans.add_metric(db_session, who, span_id, data.name, data.value, data.comment)

    @get("/{span_id:str}/metrics", operation_id="v2ListSpanMetrics", responses=v2_error_responses(401, 404))
    async def list_metrics(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        span_id: SpanId,
    ) -> schema.V2Page[schema.Metric]:
        """A span's metrics, oldest first."""
        return await v2_spans.list_metrics(db_session, who, span_id, page_params.offset, page_params.limit)

    @patch(
        "/{span_id:str}/metrics/{metric_id:uuid}",
        operation_id="v2UpdateSpanMetric",
        responses=v2_error_responses(401, 404, 422),
    )
    async def update_metric(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        span_id: SpanId,
        metric_id: FromPath[uuid.UUID],
        data: Annotated[schema.UpdateMetric, Body()],
    ) -> schema.Metric:
        """Change a metric's name, value or comment."""
        return await v2_spans.update_metric(db_session, who, span_id, metric_id, data)

    @delete(
        "/{span_id:str}/metrics/{metric_id:uuid}",
        operation_id="v2DeleteSpanMetric",
        responses=v2_error_responses(401, 404),
    )
    async def delete_metric(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        span_id: SpanId,
        metric_id: FromPath[uuid.UUID],
    ) -> None:
        """Delete a metric."""
        await v2_spans.delete_metric(db_session, who, span_id, metric_id)


class V2TraceController(Controller):
    path = "/v2/traces"
    tags = ["v2-traces"]
    security = AUTHENTICATED

    @get(operation_id="v2ListTraces", responses=v2_error_responses(401, 422))
    async def list_traces(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        page_params: NamedDependency[PageParams],
        name: Annotated[
            str | None, QueryParameter(max_length=1000, description="Part of the trace's name (any case).")
        ] = None,
    ) -> schema.V2Page[schema.TraceSummary]:
        """The caller's traces, newest first (agent turns, and what any writer sent), with
        `total_tokens` = input + output tokens of their spans."""
        return await v2_spans.list_traces(db_session, who, name, page_params.offset, page_params.limit)

    @get("/{trace_id:str}", operation_id="v2GetTrace", responses=v2_error_responses(401, 404))
    async def get_trace(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        trace_id: FromPath[str],
    ) -> schema.V2Trace:
        """A trace with its totals."""
        return await v2_spans.get_trace(db_session, who, trace_id)

    @get("/{trace_id:str}/spans", operation_id="v2GetTraceSpans", responses=v2_error_responses(401, 404))
    async def get_trace_spans(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        trace_id: FromPath[str],
    ) -> schema.V2TraceWithSpans:
        """A trace with all its spans (`spans`, by start time), each with its content."""
        return await v2_spans.trace_with_spans(db_session, who, trace_id)
