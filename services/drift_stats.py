"""The statistics of drift detection, apart from the database so they test with nothing running.

Each metric is compared between a baseline window and the recent window with a test that fits its
kind, never a bare threshold: a change is a finding only when the test says it is unlikely to be
chance (p below the setting's `DRIFT_P_VALUE`) **and** its effect is at least the smallest one worth
an alert (big samples make tiny changes significant). The effect then sets the severity
(docs/drift.md, "Severity").

- continuous values (latency, cost, tokens, output length): Mann-Whitney U, two-sided. It compares
  whole distributions by rank, so it needs no normality (costs and latencies are skewed) and one
  outlier cannot make or hide a drift. The values reported are the means; the effect is the relative
  change of the mean.
- error rate: Fisher's exact test on the 2x2 table (errors and successes per window), exact at any
  sample size, where a z-test misleads with few errors. The effect is the change in percentage points.
- tool mix: chi-square test of homogeneity on the 2 x k table of tool-call counts. The effect is the
  total variation distance between the two windows' shares (0: the same mix, 1: disjoint tools).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.schemas.drift import Severity

# Relative change of the mean (continuous metrics): at least 10 % to alert; low below 25 %, medium
# below 50 %, high from 50 % (a doubled cost is +100 %: high).
RELATIVE_STEPS = (0.10, 0.25, 0.50)
# Error rate, change in percentage points: 2 (low), 5 (medium), 15 (high).
ERROR_POINTS_STEPS = (0.02, 0.05, 0.15)
# Tool mix, total variation distance between the windows' shares: 0.10, 0.20, 0.35.
MIX_DISTANCE_STEPS = (0.10, 0.20, 0.35)


@dataclass(frozen=True)
class Finding:
    """A significant change of one metric worth an alert."""

    metric: str
    test: str
    statistic: float
    p_value: float
    baseline_value: float
    current_value: float
    baseline_count: int
    current_count: int
    severity: Severity
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def change(self) -> float | None:
        return relative_change(self.baseline_value, self.current_value)


def relative_change(baseline: float, current: float) -> float | None:
    """(current - baseline) / baseline; None when the baseline is 0 (no ratio exists)."""
    if baseline == 0:
        return None
    return (current - baseline) / abs(baseline)


def grade(effect: float, steps: tuple[float, float, float]) -> Severity | None:
    """The severity of an effect (its size, either direction) on a metric's three steps; None below
    the first: a change too small to alert on, however significant."""
    size = abs(effect)
    if size >= steps[2]:
        return "high"
    if size >= steps[1]:
        return "medium"
    if size >= steps[0]:
        return "low"
    return None


def _stats() -> Any:
    # scipy.stats takes seconds to import (1-6 s seen here): imported on the first test, not by every
    # API and worker process at start (the API imports this module for its routes).
    from scipy import stats

    return stats


def _p(value: Any) -> float | None:
    p = float(value)
    return None if math.isnan(p) else p


def compare_values(
    metric: str,
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    p_threshold: float,
    min_samples: int,
) -> Finding | None:
    """Mann-Whitney U on two samples of a continuous metric."""
    if len(baseline) < min_samples or len(current) < min_samples:
        return None
    base_mean, cur_mean = math.fsum(baseline) / len(baseline), math.fsum(current) / len(current)
    change = relative_change(base_mean, cur_mean)
    # From nothing to something (a cost where there was none) is as large a change as there is.
    zero_base: Severity | None = "high" if cur_mean != 0 else None
    severity = zero_base if change is None else grade(change, RELATIVE_STEPS)
    if severity is None:
        return None
    result = _stats().mannwhitneyu(current, baseline, alternative="two-sided")
    p = _p(result.pvalue)  # NaN when every value of both samples is the same
    if p is None or p >= p_threshold:
        return None
    return Finding(
        metric=metric,
        test="mann_whitney_u",
        statistic=float(result.statistic),
        p_value=p,
        baseline_value=base_mean,
        current_value=cur_mean,
        baseline_count=len(baseline),
        current_count=len(current),
        severity=severity,
        details={
            "baseline_median": float(statistics.median(baseline)),
            "current_median": float(statistics.median(current)),
        },
    )


def compare_rates(
    metric: str,
    baseline_events: int,
    baseline_total: int,
    current_events: int,
    current_total: int,
    *,
    p_threshold: float,
    min_samples: int,
) -> Finding | None:
    """Fisher's exact test on the share of events (errors) among the calls of each window."""
    if baseline_total < min_samples or current_total < min_samples:
        return None
    base_rate, cur_rate = baseline_events / baseline_total, current_events / current_total
    severity = grade(cur_rate - base_rate, ERROR_POINTS_STEPS)
    if severity is None:
        return None
    table = [
        [current_events, current_total - current_events],
        [baseline_events, baseline_total - baseline_events],
    ]
    statistic, p_value = _stats().fisher_exact(table, alternative="two-sided")
    p = _p(p_value)
    if p is None or p >= p_threshold:
        return None
    return Finding(
        metric=metric,
        test="fisher_exact",
        statistic=float(statistic),  # the odds ratio (inf when the baseline had no errors)
        p_value=p,
        baseline_value=base_rate,
        current_value=cur_rate,
        baseline_count=baseline_total,
        current_count=current_total,
        severity=severity,
        details={"baseline_events": baseline_events, "current_events": current_events},
    )


def compare_mix(
    metric: str,
    baseline: Mapping[str, int],
    current: Mapping[str, int],
    *,
    p_threshold: float,
    min_samples: int,
) -> Finding | None:
    """Chi-square test of homogeneity on how calls spread over names (tools) in the two windows."""
    base_total, cur_total = sum(baseline.values()), sum(current.values())
    if base_total < min_samples or cur_total < min_samples:
        return None
    names = sorted(n for n in set(baseline) | set(current) if baseline.get(n, 0) + current.get(n, 0) > 0)
    if len(names) < 2:
        return None  # one tool in both windows: the mix cannot change
    base_shares = {n: baseline.get(n, 0) / base_total for n in names}
    cur_shares = {n: current.get(n, 0) / cur_total for n in names}
    distance = 0.5 * math.fsum(abs(cur_shares[n] - base_shares[n]) for n in names)
    severity = grade(distance, MIX_DISTANCE_STEPS)
    if severity is None:
        return None
    table = [[current.get(n, 0) for n in names], [baseline.get(n, 0) for n in names]]
    result = _stats().chi2_contingency(table)
    p = _p(result.pvalue)
    if p is None or p >= p_threshold:
        return None
    # The values shown are the share of the tool whose share moved most (named in details).
    moved = max(names, key=lambda n: (abs(cur_shares[n] - base_shares[n]), n))
    return Finding(
        metric=metric,
        test="chi_square",
        statistic=float(result.statistic),
        p_value=p,
        baseline_value=base_shares[moved],
        current_value=cur_shares[moved],
        baseline_count=base_total,
        current_count=cur_total,
        severity=severity,
        details={
            "tool": moved,
            "distance": distance,
            "baseline_shares": base_shares,
            "current_shares": cur_shares,
        },
    )
