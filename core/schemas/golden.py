"""Golden tests (issue 14, Opswald): the workflow's contract and payloads (ids only: the activities
read the run's rows) and the HTTP shapes of `/v1/golden-tests` (docs/golden_tests.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from core.schemas.turns import SessionInput


class GoldenLoop:
    """The golden run workflow's contract, by name: what the API, the worker and the workflow agree
    on."""

    WORKFLOW: Final = "GoldenRunWorkflow"
    # Activities: mark the run started and list its results still to judge; fork one test's trace
    # (once: a retried attempt finds the fork it stored); judge one result (once); count and close.
    PLAN: Final = "golden_plan"
    FORK: Final = "golden_fork"
    JUDGE: Final = "golden_judge"
    FINISH: Final = "golden_finish"

    @staticmethod
    def workflow_id(run_id: object) -> str:
        """One workflow per run: starting it twice runs it once."""
        return f"golden-run-{run_id}"


# At most this many tests per run (a 400 names `test_ids`): each is a whole agent turn.
MAX_TESTS: Final = 50
# At most this many forked turns at once per run: a provider's rate limit would refuse many more.
TESTS_AT_ONCE: Final = 4
# `modifications.timeout` (seconds): a run's per-test time limit, at most this.
MAX_TIMEOUT_S: Final = 3600
# Bounds on what a test stores (a regex is compiled at create time and run on every judge).
MAX_PATTERN: Final = 1000
MAX_EXPECTED_TEXT: Final = 20_000
MAX_RUBRIC: Final = 10_000
DEFAULT_THRESHOLD: Final = 0.8

MATCHES: Final = ("exact", "contains", "regex", "json_subset", "semantic")
OUTCOMES: Final = ("completed", "failed", "cancelled")
OUTCOME_KEYS: Final = (
    "status",
    "final_message",
    "match",
    "threshold",
    "embedding_model",
    "judge",
    "max_cost",
    "max_duration_ms",
    "tools",
)

ResultStatus = Literal["pending", "running", "passed", "failed", "error"]


# --------------------------------------------------------------------------------- workflow payloads


class GoldenRunInput(msgspec.Struct, kw_only=True):
    run_id: str


class GoldenPlan(msgspec.Struct, kw_only=True):
    # The results still to judge, in the run's order (a result judged before a retry is kept).
    result_ids: list[str] = msgspec.field(default_factory=list)
    # The per-test time limit (`modifications.timeout`), None for none.
    timeout_s: float | None = None


class GoldenStep(msgspec.Struct, kw_only=True):
    run_id: str
    result_id: str


class GoldenJudgeInput(msgspec.Struct, kw_only=True):
    run_id: str
    result_id: str
    # The test's time limit passed and the fork was stopped (its turn ends `cancelled`).
    timed_out: bool = False
    # The forked session's workflow failed (its replay row may not have been filled in).
    child_error: str | None = None
    # Judging itself failed for good (a provider that kept failing): the result is `error`.
    failure: str | None = None


class GoldenForked(msgspec.Struct, kw_only=True):
    """The fork of one test's trace: the forked session's workflow to run as a child, or None when
    the test could not be forked (its result is `error` already, saying why)."""

    session: SessionInput | None = None


class GoldenVerdict(msgspec.Struct, kw_only=True):
    status: str


class GoldenFinished(msgspec.Struct, kw_only=True):
    status: str
    passed: int
    failed: int


# ------------------------------------------------------------------------------------------ HTTP

Name = Annotated[str, Meta(min_length=1, max_length=255)]
Tag = Annotated[str, Meta(min_length=1, max_length=100)]


class GoldenTestCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`expected_outcome` is checked key by key by the service, so a 400 names
    `expected_outcome.<key>`."""

    trace_id: Annotated[str, Meta(min_length=1, max_length=255)]
    name: Name
    expected_outcome: dict[str, Any]
    description: Annotated[str, Meta(max_length=10_000)] | None = None
    tags: Annotated[list[Tag], Meta(max_length=50)] = msgspec.field(default_factory=list)


class GoldenTestOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    trace_id: str
    name: str
    description: str | None
    tags: list[str]
    expected_outcome: dict[str, Any]
    project_id: uuid.UUID
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class GoldenTestList(msgspec.Struct, kw_only=True):
    golden_tests: list[GoldenTestOut]
    total: int
    offset: int
    limit: int
    has_more: bool


class GoldenTestDeleted(msgspec.Struct, kw_only=True):
    deleted: bool
    test_id: uuid.UUID


class GoldenRunRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`modifications`: the fork's (model, temperature, system_prompt...; docs/replay.md) and
    `timeout`, the per-test time limit in seconds. Checked key by key by the service."""

    test_ids: list[Any]
    modifications: dict[str, Any] = msgspec.field(default_factory=dict)


class GoldenRunStarted(msgspec.Struct, kw_only=True):
    run_id: uuid.UUID
    status: str
    total_tests: int
    url: str


class GoldenCheck(msgspec.Struct, kw_only=True):
    check: str
    passed: bool
    expected: Any = None
    actual: Any = None
    reason: str | None = None


class GoldenResultOut(msgspec.Struct, kw_only=True):
    test_id: uuid.UUID | None
    name: str
    trace_id: str
    status: str
    checks: list[GoldenCheck]
    diff: list[dict[str, Any]]
    final_output: str | None
    cost: float | None
    duration_ms: int | None
    replay_id: uuid.UUID | None
    session_id: uuid.UUID | None
    error: str | None


class GoldenRunOut(msgspec.Struct, kw_only=True):
    run_id: uuid.UUID
    status: str
    total_tests: int
    passed: int
    failed: int
    test_ids: list[str]
    modifications: dict[str, Any]
    created_by: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    # Only in the single run's answer (a list leaves them out).
    results: list[GoldenResultOut] | None = None


class GoldenRunList(msgspec.Struct, kw_only=True):
    runs: list[GoldenRunOut]
    total: int
    offset: int
    limit: int
    has_more: bool
