"""Replays of recorded traces with per-span mutations (seed 001's replay, issue 14): the workflow's
contract and payloads (ids only: the activities read the replay's row), and the HTTP shapes of
`POST /v1/traces/{trace_id}/replay` and its two GETs (docs/replay.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta


class ReplayLoop:
    """The replay workflow's contract, by name: what the API, the worker and the workflow agree on."""

    WORKFLOW: Final = "ReplayWorkflow"
    # Activities: mark the run started and list the spans to re-execute; re-execute one span (its
    # output stored under the replay and span, once); write the result trace and the outcome.
    PLAN: Final = "replay_plan"
    RUN_SPAN: Final = "replay_run_span"
    FINISH: Final = "replay_finish"

    @staticmethod
    def workflow_id(replay_id: object) -> str:
        """One workflow per replay run: starting it twice runs it once."""
        return f"replay-{replay_id}"

    @staticmethod
    def result_trace_id(replay_id: object) -> str:
        """The trace the re-run is stored as, in the original's project."""
        return f"replay-{replay_id}"


# The keys a span's mutation may set (docs/replay.md): the model (one of the caller's models, by
# name or id), the call's parameters, and what the model reads.
MUTATION_KEYS: Final = (
    "model",
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "messages",
    "system_prompt",
)
# At most this many spans per replay (a 400 names `mutations`): each may be one model call.
MAX_MUTATIONS: Final = 50
# At most this many spans' calls at once per replay (the workflow's gate): fifty calls at once to
# one provider would meet its rate limit, and every retry with them.
SPANS_AT_ONCE: Final = 4
# The parameters passed to the model as they are (litellm's names).
CALL_PARAMS: Final = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)

ReplayStatus = Literal["pending", "running", "completed", "failed"]


# --------------------------------------------------------------------------------- workflow payloads


class ReplayInput(msgspec.Struct, kw_only=True):
    replay_id: str


class ReplayPlan(msgspec.Struct, kw_only=True):
    # The mutated spans to re-execute, in the trace's order (the others are diffed on input only).
    span_ids: list[str] = msgspec.field(default_factory=list)


class ReplaySpanInput(msgspec.Struct, kw_only=True):
    replay_id: str
    span_id: str


class ReplaySpanResult(msgspec.Struct, kw_only=True):
    span_id: str
    # Whether an earlier attempt had stored the output already (the model was not called again).
    found_stored: bool = False


class ReplayFinishInput(msgspec.Struct, kw_only=True):
    replay_id: str
    # Spans whose re-execution failed for good: span id -> what failed (no provider text).
    failures: dict[str, str] = msgspec.field(default_factory=dict)


class ReplayOutcome(msgspec.Struct, kw_only=True):
    status: str
    result_trace_id: str | None = None


# ------------------------------------------------------------------------------------------ HTTP


class ReplayRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`mutations`: span id -> the changes for that span. Checked key by key by the service, so a
    400 names `mutations.<span id>.<key>`."""

    mutations: dict[str, Any]


class SpanDiff(msgspec.Struct, kw_only=True):
    span_id: str
    span_name: str
    original_input: Any
    mutated_input: Any
    original_output: Any
    # The re-executed call's answer (an assistant message); null when the span was not re-executed
    # (yet: while the replay runs; or ever: `reason` says why).
    mutated_output: Any = None
    reexecuted: bool = False
    reason: str | None = None


class ReplayStarted(msgspec.Struct, kw_only=True):
    """The POST's answer: 001's fields, plus the run's status and its result trace."""

    original_trace_id: str
    mutations: dict[str, Any]
    diffs: list[SpanDiff]
    replay_run_id: uuid.UUID
    status: str
    result_trace_id: str | None
    error: str | None = None


class ReplayRun(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    original_trace_id: str
    kind: str
    status: str
    created_by: str | None
    config: dict[str, Any]
    result_trace_id: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None


class ReplayDiff(msgspec.Struct, kw_only=True):
    original_trace_id: str
    mutations: dict[str, Any]
    diffs: list[SpanDiff]
    status: str


# ------------------------------------------------------------------------- Opswald's replays (forks)


class StartReplay(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/replays`: fork an agent turn's trace at `fork_from_step` (a reasoning step; default
    1, the whole turn) and run it again with `modifications` (docs/replay.md, "Forks")."""

    trace_id: str
    mode: str = "auto"
    modifications: dict[str, Any] | None = None
    fork_from_step: Annotated[int, Meta(ge=1)] | None = None


class ReplayStartedView(msgspec.Struct, kw_only=True):
    """Opswald's answer to the start, and the fork's session (its events stream like any session's)."""

    replay_id: uuid.UUID
    trace_id: str
    mode: str
    status: str
    url: str
    started_at: datetime | None
    session_id: uuid.UUID | None
    fork_from_step: int


class Change(msgspec.Struct, kw_only=True):
    step: int
    field: str
    original: Any
    modified: Any


class ReplayResult(msgspec.Struct, kw_only=True):
    final_output: str | None
    total_cost: float
    duration_ms: int
    changes_from_original: list[Change]
    # The forked turn's outcome: completed, failed, cancelled (stopped).
    outcome: str | None = None


class ReplayView(msgspec.Struct, kw_only=True):
    """`GET /v1/replays/{id}`: Opswald's fields, then this server's (the fork's session, the step it
    holds before, its result trace)."""

    replay_id: uuid.UUID
    trace_id: str
    status: str
    current_step: int
    total_steps: int
    started_at: datetime | None
    completed_at: datetime | None
    result: ReplayResult | None
    kind: str
    mode: str
    fork_from_step: int | None
    modifications: dict[str, Any]
    holding_at: int | None
    session_id: uuid.UUID | None
    result_trace_id: str | None
    url: str
    created_at: datetime
    error: str | None


class ReplayList(msgspec.Struct, kw_only=True):
    replays: list[ReplayView]
    total: int
    has_more: bool
