"""Drift detection (001, issue 14; docs/drift.md): per account, project, scope (an agent, or the trace
name of an outside app's traces) and model, the recent window's LLM calls against the baseline
window's, one statistical test per metric (services/drift_stats.py); each significant change worth
an alert becomes a `drift_alerts` row. The `drift-detection` Temporal schedule runs it for every
account (workflows/drift.py, activities/drift.py); `POST /v1/drift/run` runs it for the caller.

Samples are read with one aggregating statement per account and kind (LLM calls, tool calls): the
newest `DRIFT_MAX_TRACES` traces of each window through `ix_traces_owner_started_id`, their spans
through `ix_spans_trace_start`, grouped in PostgreSQL into one row per group and window (the values
as arrays), so the rows read and sent are bounded whatever the store holds."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.db import models
from core.errors import InvalidInput, NotFound
from core.identity import Identity
from core.ids import uuid7
from core.schemas import drift as schema
from core.settings import Settings
from services import drift_stats
from services.drift_stats import Finding
from workflows.drift import DriftWorkflow

SCHEDULE_ID = schema.DriftLoop.SCHEDULE_ID
RECENT_ALERTS = 10
CONTINUOUS = ("latency_ms", "cost", "tokens", "output_length")

# The newest traces of each window (bounded), named by scope: the agent for an agent's turns, else
# the trace's name (traces with neither have no scope to compare and are left out). A replay's
# re-run (`metadata.replay_of`, services/replays.py) is not traffic: its copied spans would count twice.
_SCOPED = """
    t AS (
        (SELECT id, project_id, agent_id, name, 'baseline' AS w FROM traces
         WHERE owner_id = :owner AND started_at >= :baseline_start AND started_at < :window_start
           AND metadata -> 'replay_of' IS NULL
         ORDER BY started_at DESC LIMIT :cap)
        UNION ALL
        (SELECT id, project_id, agent_id, name, 'current' AS w FROM traces
         WHERE owner_id = :owner AND started_at >= :window_start AND started_at < :window_end
           AND metadata -> 'replay_of' IS NULL
         ORDER BY started_at DESC LIMIT :cap)
    ),
    scoped AS (
        SELECT id, project_id, w,
               CASE WHEN agent_id IS NOT NULL THEN 'agent' ELSE 'trace_name' END AS scope_kind,
               coalesce(agent_id::text, left(name, 255)) AS scope
        FROM t WHERE agent_id IS NOT NULL OR name IS NOT NULL
    )
"""

# One row per (project, scope, model, window): the LLM calls' values as arrays, their error count.
CALLS = (
    "WITH"
    + _SCOPED
    + """
SELECT sc.project_id, sc.scope_kind, sc.scope, s.model, sc.w,
       array_agg(extract(epoch FROM s.end_time - s.start_time)::float8 * 1000)
           FILTER (WHERE s.start_time IS NOT NULL AND s.end_time IS NOT NULL) AS latency_ms,
       array_agg(s.cost::float8) FILTER (WHERE s.cost IS NOT NULL) AS cost,
       array_agg(coalesce(s.input_tokens, 0) + coalesce(s.output_tokens, 0))
           FILTER (WHERE s.input_tokens IS NOT NULL OR s.output_tokens IS NOT NULL) AS tokens,
       array_agg(s.output_tokens) FILTER (WHERE s.output_tokens IS NOT NULL) AS output_length,
       count(*) AS calls,
       count(*) FILTER (WHERE s.status = 'error') AS errors
FROM scoped sc JOIN spans s ON s.trace_pk = sc.id
WHERE s.model IS NOT NULL
GROUP BY 1, 2, 3, 4, 5
"""
)

# One row per (project, scope, window, tool name): how many calls.
TOOLS = (
    "WITH"
    + _SCOPED
    + """
SELECT sc.project_id, sc.scope_kind, sc.scope, sc.w, s.name, count(*) AS calls
FROM scoped sc JOIN spans s ON s.trace_pk = sc.id
WHERE s.kind = 'tool'
GROUP BY 1, 2, 3, 4, 5
"""
)

# The accounts with traces in the recent window, a page after a cursor (the last id of the page
# before): one index probe per account (ix_traces_owner_started_id), never a scan of the traces.
OWNERS = """
SELECT u.id FROM users u
WHERE u.id > :after
  AND EXISTS (SELECT 1 FROM traces t
              WHERE t.owner_id = u.id AND t.started_at >= :window_start AND t.started_at < :window_end)
ORDER BY u.id
LIMIT :limit
"""
NO_OWNER = uuid.UUID(int=0)  # before every account id

# One open alert per drift, kept current: while an alert of the same scope, model and metric is
# unresolved, a run (of a later window) updates its values, severity and windows instead of adding
# one, so a drift that grows from low to high shows high. The partial unique index
# uq_drift_alerts_open is what makes this hold between concurrent runs (the schedule's and a
# POST /v1/drift/run with another window_end): under READ COMMITTED a NOT EXISTS check would let
# both insert. An older window than the open alert's changes nothing, nor does a window no later
# than a resolved alert's of the same drift (a retried or repeated run after a resolve).
INSERT_ALERT = """
INSERT INTO drift_alerts (
    id, owner_id, project_id, scope_kind, scope, model, metric, severity, baseline_value,
    current_value, test, statistic, p_value, baseline_count, window_count, baseline_start,
    baseline_end, window_start, window_end, details)
SELECT CAST(:id AS uuid), CAST(:owner AS uuid), CAST(:project AS uuid), CAST(:scope_kind AS varchar),
       CAST(:scope AS varchar), CAST(:model AS varchar), CAST(:metric AS varchar), :severity,
       :baseline_value, :current_value, :test, :statistic, :p_value, :baseline_count, :window_count,
       :baseline_start, :baseline_end, :window_start, CAST(:window_end AS timestamptz),
       CAST(:details AS jsonb)
WHERE NOT EXISTS (
    SELECT 1 FROM drift_alerts
    WHERE owner_id = :owner AND resolved_at IS NOT NULL AND project_id = :project
      AND scope_kind = :scope_kind AND scope = :scope AND model = :model AND metric = :metric
      AND window_end >= :window_end)
ON CONFLICT (owner_id, project_id, scope_kind, scope, model, metric) WHERE resolved_at IS NULL
DO UPDATE SET
    severity = EXCLUDED.severity, baseline_value = EXCLUDED.baseline_value,
    current_value = EXCLUDED.current_value, test = EXCLUDED.test, statistic = EXCLUDED.statistic,
    p_value = EXCLUDED.p_value, baseline_count = EXCLUDED.baseline_count,
    window_count = EXCLUDED.window_count, baseline_start = EXCLUDED.baseline_start,
    baseline_end = EXCLUDED.baseline_end, window_start = EXCLUDED.window_start,
    window_end = EXCLUDED.window_end, details = EXCLUDED.details, updated_at = now()
WHERE drift_alerts.window_end <= EXCLUDED.window_end
RETURNING id, xmax = 0 AS made
"""


@dataclass(frozen=True)
class Windows:
    baseline_start: datetime
    window_start: datetime  # also the baseline's end
    window_end: datetime


def windows(settings: Settings, window_end: datetime) -> Windows:
    end = window_end if window_end.tzinfo else window_end.replace(tzinfo=UTC)
    start = end - timedelta(seconds=settings.drift_window_s)
    return Windows(
        baseline_start=start - timedelta(seconds=settings.drift_baseline_s),
        window_start=start,
        window_end=end,
    )


@dataclass
class _Group:
    """One (project, scope, model)'s samples, per window."""

    values: dict[str, dict[str, list[float]]]  # window -> metric -> values
    calls: dict[str, int]
    errors: dict[str, int]


GroupKey = tuple[uuid.UUID, str, str, str]  # project, scope kind, scope, model ("" for tool mix)


async def _samples(
    db: AsyncSession, owner_id: uuid.UUID, w: Windows, cap: int
) -> tuple[dict[GroupKey, _Group], dict[GroupKey, dict[str, dict[str, int]]]]:
    params = {
        "owner": owner_id,
        "baseline_start": w.baseline_start,
        "window_start": w.window_start,
        "window_end": w.window_end,
        "cap": cap,
    }
    groups: dict[GroupKey, _Group] = {}
    for row in (await db.execute(text(CALLS), params)).all():
        key: GroupKey = (row.project_id, row.scope_kind, row.scope, row.model)
        group = groups.setdefault(key, _Group(values={}, calls={}, errors={}))
        group.values[row.w] = {m: [float(v) for v in getattr(row, m) or ()] for m in CONTINUOUS}
        group.calls[row.w], group.errors[row.w] = int(row.calls), int(row.errors)
    tools: dict[GroupKey, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for row in (await db.execute(text(TOOLS), params)).all():
        tools[(row.project_id, row.scope_kind, row.scope, "")][row.w][row.name] = int(row.calls)
    return groups, tools


def _findings(
    settings: Settings,
    groups: dict[GroupKey, _Group],
    tools: dict[GroupKey, dict[str, dict[str, int]]],
    on_group: Callable[[int], None] | None = None,
) -> tuple[int, list[tuple[GroupKey, Finding]]]:
    """(the groups with samples in both windows, the findings), every metric of every group tested;
    `on_group(n)` as it starts the n-th group (from the thread this runs in)."""
    p, least = settings.drift_p_value, settings.drift_min_samples
    tested, found = 0, []
    for key, group in groups.items():
        if "baseline" not in group.calls or "current" not in group.calls:
            continue
        tested += 1
        if on_group is not None:
            on_group(tested)
        base, cur = group.values["baseline"], group.values["current"]
        for metric in CONTINUOUS:
            finding = drift_stats.compare_values(
                metric, base[metric], cur[metric], p_threshold=p, min_samples=least
            )
            if finding:
                found.append((key, finding))
        rate = drift_stats.compare_rates(
            "error_rate",
            group.errors["baseline"],
            group.calls["baseline"],
            group.errors["current"],
            group.calls["current"],
            p_threshold=p,
            min_samples=least,
        )
        if rate:
            found.append((key, rate))
    for key, per_window in tools.items():
        if "baseline" not in per_window or "current" not in per_window:
            continue
        tested += 1
        if on_group is not None:
            on_group(tested)
        mix = drift_stats.compare_mix(
            "tool_mix", per_window["baseline"], per_window["current"], p_threshold=p, min_samples=least
        )
        if mix:
            found.append((key, mix))
    return tested, found


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


async def detect_owner(
    db: AsyncSession,
    settings: Settings,
    owner_id: uuid.UUID,
    window_end: datetime,
    *,
    on_group: Callable[[int], None] | None = None,
) -> tuple[int, list[uuid.UUID]]:
    """Tests every group of one account for the windows ending at `window_end` and stores the
    alerts (committed). Returns the groups tested and the ids of the alerts this call made.
    `on_group(n)` is called, from a worker thread, as each group's tests start."""
    w = windows(settings, window_end)
    groups, tools = await _samples(db, owner_id, w, settings.drift_max_traces)
    # The tests are CPU work (a large account's 4 x 200k values took over a second): in a thread,
    # so the event loop they share with the turns' and replays' activities (whose heartbeats time
    # out after 10 s) or with the API's requests keeps running. scipy releases the GIL in its
    # sorting and ranking, and the thread's switch interval bounds the rest.
    tested, found = await asyncio.to_thread(_findings, settings, groups, tools, on_group)
    made = await store_alerts(db, owner_id, w, found)
    await db.commit()
    return tested, made


async def store_alerts(
    db: AsyncSession, owner_id: uuid.UUID, w: Windows, found: list[tuple[GroupKey, Finding]]
) -> list[uuid.UUID]:
    """Stores the findings of the windows `w` (not committed): a new alert, or the open alert of the
    same drift brought up to date. Returns the ids of the alerts made (not those updated)."""
    made = []
    for (project_id, scope_kind, scope, model), finding in found:
        row = (
            await db.execute(
                text(INSERT_ALERT),
                {
                    "id": uuid7(),
                    "owner": owner_id,
                    "project": project_id,
                    "scope_kind": scope_kind,
                    "scope": scope,
                    "model": model,
                    "metric": finding.metric,
                    "severity": finding.severity,
                    "baseline_value": finding.baseline_value,
                    "current_value": finding.current_value,
                    "test": finding.test,
                    "statistic": _finite(finding.statistic),
                    "p_value": finding.p_value,
                    "baseline_count": finding.baseline_count,
                    "window_count": finding.current_count,
                    "baseline_start": w.baseline_start,
                    "baseline_end": w.window_start,
                    "window_start": w.window_start,
                    "window_end": w.window_end,
                    "details": msgspec.json.encode(finding.details).decode(),
                },
            )
        ).first()
        if row is not None and row.made:
            made.append(row.id)
    return made


async def owners_with_traffic(
    db: AsyncSession, settings: Settings, window_end: datetime, *, after: uuid.UUID | None, limit: int
) -> list[uuid.UUID]:
    """Up to `limit` accounts with traces in the recent window, in id order, after `after`: a page,
    so no list of every account has to fit one activity result (Temporal's ~2 MB payload limit)."""
    w = windows(settings, window_end)
    params = {
        "window_start": w.window_start,
        "window_end": w.window_end,
        "after": after or NO_OWNER,
        "limit": limit,
    }
    return [row.id for row in (await db.execute(text(OWNERS), params)).all()]


# ------------------------------------------------------------------------------------------ the API


def _alert(row: models.DriftAlert) -> schema.DriftAlert:
    return schema.DriftAlert(
        id=row.id,
        project_id=row.project_id,
        severity=cast(schema.Severity, row.severity),
        metric=row.metric,
        scope_kind=row.scope_kind,
        scope=row.scope,
        model=row.model,
        baseline_value=row.baseline_value,
        current_value=row.current_value,
        change=drift_stats.relative_change(row.baseline_value, row.current_value),
        windows=schema.Windows(
            baseline=schema.Window(start=row.baseline_start, end=row.baseline_end, count=row.baseline_count),
            current=schema.Window(start=row.window_start, end=row.window_end, count=row.window_count),
        ),
        test=row.test,
        statistic=row.statistic,
        p_value=row.p_value,
        details=row.details,
        created_at=row.created_at,
        resolved_at=row.resolved_at,
    )


def _newest(who: Identity) -> Any:
    return (
        select(models.DriftAlert)
        .where(models.DriftAlert.owner_id == who.user_id)
        .order_by(models.DriftAlert.created_at.desc(), models.DriftAlert.id.desc())
    )


async def list_alerts(
    db: AsyncSession, who: Identity, *, include_resolved: bool, limit: int
) -> list[schema.DriftAlert]:
    """The caller's alerts, newest first; unresolved only unless asked."""
    query = _newest(who).limit(limit)
    if not include_resolved:
        query = query.where(models.DriftAlert.resolved_at.is_(None))
    return [_alert(row) for row in (await db.scalars(query)).all()]


async def summary(db: AsyncSession, who: Identity) -> schema.DriftSummary:
    counts = (
        await db.execute(
            select(models.DriftAlert.severity, models.DriftAlert.resolved_at.is_(None), func.count())
            .where(models.DriftAlert.owner_id == who.user_id)
            .group_by(models.DriftAlert.severity, models.DriftAlert.resolved_at.is_(None))
        )
    ).all()
    by_severity: dict[str, int] = dict.fromkeys(schema.SEVERITIES, 0)
    total = unresolved = 0
    for severity, is_open, count in counts:
        total += count
        if is_open:
            unresolved += count
            by_severity[severity] = by_severity.get(severity, 0) + count
    recent = (await db.scalars(_newest(who).limit(RECENT_ALERTS))).all()
    return schema.DriftSummary(
        total_alerts=total,
        unresolved=unresolved,
        by_severity=by_severity,
        recent_alerts=[_alert(row) for row in recent],
    )


async def resolve(db: AsyncSession, who: Identity, alert_id: uuid.UUID) -> schema.DriftAlert:
    """Marks the alert resolved (the first resolution's time stays); 404 for another's."""
    await db.execute(
        update(models.DriftAlert)
        .where(
            models.DriftAlert.id == alert_id,
            models.DriftAlert.owner_id == who.user_id,
            models.DriftAlert.resolved_at.is_(None),
        )
        .values(resolved_at=func.now())
    )
    await db.commit()
    row = await db.scalar(
        select(models.DriftAlert).where(
            models.DriftAlert.id == alert_id, models.DriftAlert.owner_id == who.user_id
        )
    )
    if row is None:
        raise NotFound(f"drift alert {alert_id} not found")
    return _alert(row)


async def run_now(
    db: AsyncSession, settings: Settings, who: Identity, window_end: datetime | None
) -> schema.DriftRunResult:
    """The scheduled detection, for the caller only, now (or for the windows ending at `window_end`).
    Answers every alert of those windows, those an earlier run made too."""
    end = window_end or datetime.now(UTC)
    try:
        w = windows(settings, end)
    except OverflowError:  # a window_end in year 1: its baseline would start before any date
        raise InvalidInput("window_end: too early for the drift windows", field="window_end") from None
    tested, made = await detect_owner(db, settings, who.user_id, w.window_end)
    rows = (await db.scalars(_newest(who).where(models.DriftAlert.window_end == w.window_end))).all()
    return schema.DriftRunResult(
        baseline_start=w.baseline_start,
        baseline_end=w.window_start,
        window_start=w.window_start,
        window_end=w.window_end,
        groups_tested=tested,
        alerts_created=len(made),
        alerts=[_alert(row) for row in rows],
    )


# ------------------------------------------------------------------------------------- the schedule


def schedule(settings: Settings, task_queue: str) -> Schedule:
    every = timedelta(seconds=settings.drift_interval_s)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DriftWorkflow.run,
            schema.DriftScheduleInput(),
            id=f"{SCHEDULE_ID}-run",  # Temporal appends the scheduled time
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        # A run still going when the next is due: skip the next (the windows overlap anyway); after
        # an outage, run once for the missed period, not once per missed interval.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=every),
    )


async def ensure_schedule(
    client: Client, settings: Settings, task_queue: str, *, schedule_id: str = SCHEDULE_ID
) -> None:
    """Creates the `drift-detection` schedule, or brings an existing one to these settings (every
    worker calls this at start; any number of them may race: the loser updates). An existing
    schedule keeps its state: an operator's pause (and its note) outlives the workers' restarts."""
    wanted = schedule(settings, task_queue)
    try:
        await client.create_schedule(schedule_id, wanted)
    except ScheduleAlreadyRunningError:

        def updated(current: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=replace(wanted, state=current.description.schedule.state))

        await client.get_schedule_handle(schedule_id).update(updated)
