"""Usage and cost analytics from the trace store's rows (`traces` and their `spans`): Opswald's
`/v1/analytics/usage` and `/v1/analytics/cost`, Opper's `/v2/analytics/usage`. Each answer is one
SQL statement: the caller's traces in the window through `ix_traces_owner_started_id` (owner, start
time), their spans through `ix_spans_trace_start`, aggregated in the database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.identity import Identity
from core.schemas import opswald as schema
from core.schemas.traces import usage_counted

Period = Literal["1d", "7d", "30d", "90d"]
GroupBy = Literal["day", "week", "month"]
Granularity = Literal["minute", "hour", "day", "week", "month", "year"]
PERIOD_DAYS = {"1d": 1, "7d": 7, "30d": 30, "90d": 90}
TOP_MODELS = 10
# Postgres' own interval for each bucket (the keys are the only values ever put in the SQL text).
STEP = {
    "minute": "1 minute",
    "hour": "1 hour",
    "day": "1 day",
    "week": "1 week",
    "month": "1 month",
    "year": "1 year",
}

# The caller's traces started in the window, and the LLM calls (spans with a model) among their spans
# (a roll-up's restated usage is not a call of its own: core/schemas/traces.ROLLUP_MARK; its test is
# written as ix_spans_llm_calls' predicate, so this read stays index-only). The texts below go
# through str.format (`{project}`): the test's JSON braces are doubled for it.
# A replay's re-run (`metadata.replay_of`, services/replays.py) is not usage: its spans are copies
# of the original's (only its re-executed calls are new, and a replay's own, not the app's).
_WINDOW = (
    """
    t AS (
        SELECT id, started_at, total_cost, input_tokens + output_tokens AS tokens, user_id
        FROM traces
        WHERE owner_id = :owner AND started_at >= :start AND started_at < :end {project}
          AND metadata -> 'replay_of' IS NULL
    ),
    calls AS (
        SELECT s.model, s.cost, coalesce(s.input_tokens, 0) AS input_tokens,
               coalesce(s.output_tokens, 0) AS output_tokens, coalesce(s.start_time, t.started_at) AS at
        FROM t JOIN spans s ON s.trace_pk = t.id
        WHERE s.model IS NOT NULL AND """  # noqa: S608 - usage_counted is a constant text
    + usage_counted("s").replace("{", "{{").replace("}", "}}")
    + """
    )
"""
)

# Fixed text (the window CTEs, then this answer's); every value is a bound parameter.
USAGE = (
    "WITH"  # noqa: S608
    + _WINDOW
    + """,
    buckets AS (
        SELECT b::date AS day
        FROM generate_series(
            date_trunc(:unit, CAST(:start AS timestamptz) AT TIME ZONE 'UTC'),
            date_trunc(:unit, CAST(:end AS timestamptz) AT TIME ZONE 'UTC' - interval '1 microsecond'),
            CAST(CAST(:step AS text) AS interval)
        ) AS b
    ),
    per_bucket AS (
        SELECT date_trunc(:unit, started_at AT TIME ZONE 'UTC')::date AS day, count(*) AS traces,
               sum(total_cost) AS cost, sum(tokens) AS tokens
        FROM t GROUP BY 1
    ),
    per_model AS (
        SELECT model, count(*) AS calls, coalesce(sum(cost), 0) AS cost,
               sum(input_tokens + output_tokens) AS tokens
        FROM calls GROUP BY model
    )
SELECT
    (SELECT count(*) FROM t) AS total_traces,
    (SELECT coalesce(sum(total_cost), 0) FROM t) AS total_cost,
    (SELECT coalesce(sum(tokens), 0) FROM t) AS total_tokens,
    (SELECT coalesce(json_agg(json_build_object(
        'date', b.day, 'traces', coalesce(p.traces, 0), 'cost', coalesce(p.cost, 0),
        'tokens', coalesce(p.tokens, 0)) ORDER BY b.day), '[]')
     FROM buckets b LEFT JOIN per_bucket p ON p.day = b.day) AS daily,
    (SELECT coalesce(json_agg(json_build_object(
        'model', m.model, 'calls', m.calls, 'cost', m.cost, 'tokens', m.tokens,
        'usage', m.calls::float / nullif((SELECT sum(calls) FROM per_model), 0))
        ORDER BY m.cost DESC, m.calls DESC, m.model), '[]')
     FROM (SELECT * FROM per_model ORDER BY cost DESC, calls DESC, model LIMIT :top) m) AS top_models
"""
)

# Fixed text (the window CTEs, then this answer's); every value is a bound parameter.
COST = (
    "WITH"  # noqa: S608
    + _WINDOW
    + """
SELECT
    (SELECT coalesce(sum(total_cost), 0) FROM t WHERE started_at >= :period_start) AS total_cost,
    (SELECT coalesce(json_object_agg(model, cost ORDER BY cost DESC), '{{}}') FROM (
        SELECT model, coalesce(sum(cost), 0) AS cost FROM calls WHERE at >= :period_start GROUP BY model
    ) m) AS by_model,
    (SELECT coalesce(json_object_agg(user_key, cost ORDER BY cost DESC), '{{}}') FROM (
        SELECT coalesce(user_id, '') AS user_key, sum(total_cost) AS cost
        FROM t WHERE started_at >= :period_start GROUP BY 1
    ) u) AS by_user,
    (SELECT coalesce(sum(total_cost), 0) FROM t WHERE started_at >= :week_start) AS this_week,
    (SELECT coalesce(sum(total_cost), 0) FROM t WHERE started_at < :week_start
                                                 AND started_at >= :last_week_start) AS last_week
"""
)

# Fixed text (the window CTEs, then this answer's); every value is a bound parameter.
V2_USAGE = (
    "WITH"
    + _WINDOW
    + """
SELECT date_trunc(:unit, at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS time_bucket, {model_column}
       count(*) AS calls, coalesce(sum(cost), 0) AS cost, sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens
FROM calls
WHERE at >= :start AND at < :end
GROUP BY 1 {model_group}
ORDER BY 1 {model_group}
"""
)


def _json(value: Any) -> Any:
    # A json column of a text() statement comes back as its text.
    return msgspec.json.decode(value) if isinstance(value, (str, bytes)) else value


def _project(who: Identity, params: dict[str, Any]) -> str:
    if who.project_id is None:
        return ""
    params["project"] = who.project_id
    return "AND project_id = :project"


def _params(who: Identity, start: datetime, end: datetime) -> dict[str, Any]:
    return {"owner": who.user_id, "start": start, "end": end}


async def usage(db: AsyncSession, who: Identity, period: Period, group_by: GroupBy) -> schema.Usage:
    end = datetime.now(UTC)
    start = end - timedelta(days=PERIOD_DAYS[period])
    params = {**_params(who, start, end), "unit": group_by, "step": STEP[group_by], "top": TOP_MODELS}
    row = (await db.execute(text(USAGE.format(project=_project(who, params))), params)).one()
    return schema.Usage(
        period=period,
        group_by=group_by,
        start=start,
        end=end,
        total_traces=int(row.total_traces),
        total_cost=float(row.total_cost),
        total_tokens=int(row.total_tokens),
        daily=[
            schema.UsageBucket(
                date=date.fromisoformat(b["date"]),
                traces=b["traces"],
                cost=float(b["cost"]),
                tokens=b["tokens"],
            )
            for b in _json(row.daily)
        ],
        top_models=[
            schema.ModelUsage(
                model=m["model"],
                usage=round(float(m["usage"] or 0), 6),
                cost=float(m["cost"]),
                calls=m["calls"],
                tokens=m["tokens"],
            )
            for m in _json(row.top_models)
        ],
    )


async def cost(db: AsyncSession, who: Identity, period: Period) -> schema.CostAnalytics:
    """Cost over the period, by model (its LLM calls' cost) and by user (the traces' `user_id`), and
    the trends: the period's daily average, and the last 7 days against the 7 before (whatever the
    period: the window reaches back 14 days at least)."""
    end = datetime.now(UTC)
    days = PERIOD_DAYS[period]
    period_start = end - timedelta(days=days)
    week_start = end - timedelta(days=7)
    last_week_start = end - timedelta(days=14)
    params = {
        **_params(who, min(period_start, last_week_start), end),
        "period_start": period_start,
        "week_start": week_start,
        "last_week_start": last_week_start,
    }
    row = (await db.execute(text(COST.format(project=_project(who, params))), params)).one()
    total = float(row.total_cost)
    last_week = float(row.last_week)
    return schema.CostAnalytics(
        period=period,
        start=period_start,
        end=end,
        total_cost=total,
        cost_by_model={k: float(v) for k, v in _json(row.by_model).items()},
        cost_by_user={k: float(v) for k, v in _json(row.by_user).items()},
        trends=schema.CostTrends(
            daily_average=total / days,
            weekly_growth=(float(row.this_week) - last_week) / last_week if last_week else None,
        ),
    )


async def v2_usage(
    db: AsyncSession,
    who: Identity,
    *,
    from_date: datetime,
    to_date: datetime,
    granularity: Granularity,
    by_model: bool,
) -> schema.V2Usage:
    """Opper's usage: LLM calls (spans with a model) bucketed by their start, with count, cost and
    tokens; by model too with `group_by=model`. The calls of traces started in the window."""
    params = {**_params(who, from_date, to_date), "unit": granularity}
    statement = V2_USAGE.format(
        project=_project(who, params),
        model_column="model," if by_model else "",
        model_group=", model" if by_model else "",
    )
    rows = (await db.execute(text(statement), params)).all()
    data = [
        schema.V2UsageRow(
            time_bucket=r.time_bucket,
            count=int(r.calls),
            total_tokens=int(r.input_tokens + r.output_tokens),
            input_tokens=int(r.input_tokens),
            output_tokens=int(r.output_tokens),
            cost=float(r.cost),
            model=r.model if by_model else None,
        )
        for r in rows
    ]
    return schema.V2Usage(
        data=data,
        meta={
            "total_count": len(data),
            "total_cost": sum(d.cost for d in data),
            "from_date": from_date.isoformat(),
            "to_date": to_date.isoformat(),
            "granularity": granularity,
            "group_by": ["model"] if by_model else [],
        },
    )
