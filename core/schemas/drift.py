"""Drift detection (001, issue 14): the alerts the API answers with, and the payloads of the drift
schedule's workflow and activities (docs/drift.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

Severity = Literal["low", "medium", "high"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high")

# --------------------------------------------------------------------------------------------- API


class Window(msgspec.Struct, kw_only=True):
    start: datetime
    end: datetime
    count: int  # the samples the test compared (LLM calls, or tool calls for tool_mix)


class Windows(msgspec.Struct, kw_only=True):
    baseline: Window
    current: Window


class DriftAlert(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    project_id: uuid.UUID
    severity: Severity
    metric: str  # latency_ms | cost | tokens | error_rate | tool_mix | output_length
    scope_kind: str  # agent | trace_name
    scope: str  # the agent's id, or the trace name
    model: str  # "" for a metric of the whole scope (tool_mix)
    baseline_value: float
    current_value: float
    change: float | None  # (current - baseline) / baseline; null when the baseline is 0
    windows: Windows
    test: str  # mann_whitney_u | fisher_exact | two_proportion_z | chi_square
    statistic: float | None
    p_value: float | None
    details: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None


class DriftSummary(msgspec.Struct, kw_only=True):
    total_alerts: int  # every alert, resolved ones too
    unresolved: int
    by_severity: dict[str, int]  # the unresolved alerts by severity, every severity present
    recent_alerts: list[DriftAlert]  # the newest alerts, resolved or not


class DriftRunRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # The end of the recent window (default now): a run for a past moment tests the windows before it.
    window_end: datetime | None = None


class DriftRunResult(msgspec.Struct, kw_only=True):
    baseline_start: datetime
    baseline_end: datetime
    window_start: datetime
    window_end: datetime
    groups_tested: int  # (project, scope, model) groups with enough samples in both windows
    alerts_created: int
    alerts: list[DriftAlert]  # the alerts this run made (a repeated run finds them made: none)


# ------------------------------------------------------------------------------ workflow payloads


class DriftLoop:
    """The drift schedule's contract, by name: what the worker, the schedule (services/drift.py),
    the workflow and its activities agree on. Its payloads follow below."""

    SCHEDULE_ID: Final = "drift-detection"
    WORKFLOW: Final = "DriftDetection"
    # Activities: a page of the accounts with traffic in the recent window; test a page's accounts.
    LIST_OWNERS: Final = "list_drift_owners"
    DETECT: Final = "detect_drift"


class DriftScheduleInput(msgspec.Struct, kw_only=True, frozen=True):
    # Set by a test or an operator; a scheduled run leaves it out and uses the time it was scheduled
    # for, so a retried run tests the same windows.
    window_end: datetime | None = None
    # Accounts per page and per detection activity: small enough that a retried batch repeats
    # little, large enough that the history stays short (10,000 accounts: 200 pages).
    batch_size: int = 50


class DriftOwnersInput(msgspec.Struct, kw_only=True, frozen=True):
    window_end: datetime
    after: str | None = None  # the last account of the page before (None: from the first)
    limit: int = 50


class DriftOwners(msgspec.Struct, kw_only=True, frozen=True):
    owner_ids: list[str]


class DriftBatchInput(msgspec.Struct, kw_only=True, frozen=True):
    owner_ids: list[str]
    window_end: datetime


class DriftBatchResult(msgspec.Struct, kw_only=True, frozen=True):
    groups_tested: int = 0
    alerts_created: int = 0


class DriftScheduleResult(msgspec.Struct, kw_only=True, frozen=True):
    window_end: datetime
    owners: int
    groups_tested: int
    alerts_created: int
