"""Usage and cost analytics over the trace store: Opswald's `/v1/analytics/usage` and
`/v1/analytics/cost`, Opper's `/v2/analytics/usage` (its `{detail}` errors, 422 for a bad query).
The caller's traces only (docs/traces.md, "Analytics")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.openapi import AUTHENTICATED, error_responses, v2_error_responses
from core.identity import Identity
from core.schemas import opswald as schema
from services import analytics

V2_DEFAULT_DAYS = 30


class AnalyticsController(Controller):
    path = "/v1/analytics"
    tags = ["analytics"]
    security = AUTHENTICATED

    @get("/usage", operation_id="usageAnalytics", responses=error_responses(400))
    async def usage(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        period: Annotated[
            analytics.Period, QueryParameter(description="The window ending now: 1d, 7d, 30d or 90d.")
        ] = "7d",
        group_by: Annotated[
            analytics.GroupBy,
            QueryParameter(description="The buckets of `daily`: day, week (from Monday) or month (UTC)."),
        ] = "day",
    ) -> schema.Usage:
        """Traces, cost (USD) and tokens over the period, per bucket (`daily`, every bucket of the
        window, empty ones too) and the models most spent on (`top_models`, `usage` being the
        model's share of the period's LLM calls)."""
        return await analytics.usage(db_session, who, period, group_by)

    @get("/cost", operation_id="costAnalytics", responses=error_responses(400))
    async def cost(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        period: Annotated[
            analytics.Period, QueryParameter(description="The window ending now: 1d, 7d, 30d or 90d.")
        ] = "30d",
    ) -> schema.CostAnalytics:
        """Cost (USD) over the period, by model and by user, and the trends: the daily average and
        the last 7 days' growth over the 7 before (null when those cost nothing)."""
        return await analytics.cost(db_session, who, period)


class V2AnalyticsController(Controller):
    path = "/v2/analytics"
    tags = ["v2-analytics"]
    security = AUTHENTICATED

    @get("/usage", operation_id="v2UsageAnalytics", responses=v2_error_responses(401, 422))
    async def usage(
        self,
        db_session: NamedDependency[AsyncSession],
        who: NamedDependency[Identity],
        from_date: Annotated[
            datetime | None, QueryParameter(description="Start (inclusive); default 30 days before to_date.")
        ] = None,
        to_date: Annotated[
            datetime | None, QueryParameter(description="End (exclusive); default now.")
        ] = None,
        granularity: Annotated[
            analytics.Granularity, QueryParameter(description="minute, hour, day, week, month or year (UTC).")
        ] = "day",
        group_by: Annotated[
            str | None, QueryParameter(description="`model`: a row per bucket and model.")
        ] = None,
    ) -> schema.V2Usage:
        """LLM calls (spans with a model) per time bucket: count, cost (USD) and tokens, by model
        with `group_by=model`; only buckets with calls."""
        end = _utc(to_date) or datetime.now(UTC)
        start = _utc(from_date) or end - timedelta(days=V2_DEFAULT_DAYS)
        # Under /v2 a bad query is Opper's 422 (api/errors.py turns this into `{detail}`).
        if start >= end:
            raise ValidationException("from_date: must be before to_date")
        if group_by not in (None, "model"):
            raise ValidationException("group_by: only `model` is supported")
        return await analytics.v2_usage(
            db_session,
            who,
            from_date=start,
            to_date=end,
            granularity=granularity,
            by_model=group_by == "model",
        )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment
