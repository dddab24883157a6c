"""Workflow and activity payloads of the session loop. Claim-check: ids and small summaries only;
activities read the conversation from Postgres."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta


class SessionLoop:
    """The session workflow's contract, by name: what the API, the sweeper, the worker and the
    workflow itself must agree on. Its payloads follow below."""

    WORKFLOW: Final = "SessionWorkflow"
    # Signal: a stored user message for the session (its id).
    NEW_MESSAGE: Final = "new_message"
    # Updates: stop the running turn (-> bool); a person's decision on a tool call (-> the decision);
    # client-side tool calls whose results the API has stored (-> how many).
    CANCEL_TURN: Final = "cancel_turn"
    # Update of a forked session's workflow (an Opswald replay): play, pause, step, jump, stop
    # (-> the replay's state); query: its state.
    REPLAY_CONTROL: Final = "replay_control"
    # Signal (no arguments): stop a fork's turn, as `stop` does (for a workflow, which cannot send
    # an update: a golden test run whose time limit passed).
    STOP_REPLAY: Final = "stop_replay"
    REPLAY_STATE: Final = "replay_state"
    RESOLVE_APPROVAL: Final = "resolve_approval"
    DELIVER_TOOL_RESULTS: Final = "deliver_tool_results"
    # Queries: the running turn's id (or None); the tool calls waiting for a person; the client-side
    # tool calls waiting for the client's result.
    CURRENT_TURN: Final = "current_turn"
    PENDING_APPROVALS: Final = "pending_approvals"
    PENDING_TOOL_RESULTS: Final = "pending_tool_results"
    # Activities.
    REASON: Final = "reason"
    RUN_TOOL: Final = "run_tool"
    FINISH_TURN: Final = "finish_turn"

    @staticmethod
    def workflow_id(session_id: object) -> str:
        """One workflow per session, for as long as the session lives."""
        return f"session-{session_id}"


# ApplicationError type of an activity whose session was deleted: nothing more to do.
SESSION_GONE = "session_gone"
# ApplicationError type (and turn error_code) of a step that waited its whole window for the database.
DATABASE_UNAVAILABLE = "database_unavailable"
# ApplicationError type with which the workflow refuses a second decision on a tool call.
APPROVAL_DECIDED = "approval_decided"
# ApplicationError type with which a forked session's workflow refuses a replay control (a jump
# back, a control for a replay that has finished, a session that is not a replay's).
CONTROL_REFUSED = "replay_control_refused"

ToolStatus = Literal["success", "error", "timeout", "cancelled", "denied"]
TurnOutcome = Literal["completed", "failed", "cancelled"]


class ForkStart(msgspec.Struct, kw_only=True):
    """A forked session's turn (an Opswald replay, docs/replay.md "Forks"): the session holds a copy
    of the original's conversation up to the fork step, and its workflow answers `message_id` from
    reasoning step `iteration` on (the earlier steps' messages are copies, never re-run), gated step
    by step when `interactive`. Steps are numbered as the original trace's are (`step` is the fork
    step's number): each reasoning step one, each tool call one, in the reply's order."""

    replay_id: str
    message_id: str
    iteration: int
    step: int
    interactive: bool = False


class SessionInput(msgspec.Struct, kw_only=True):
    session_id: str
    agent_id: str
    # Carried across continue-as-new: messages waiting for a turn, and recently handled ones
    # (so a message signalled twice runs once).
    pending: list[str] = msgspec.field(default_factory=list)
    handled: list[str] = msgspec.field(default_factory=list)
    # Set for a forked session's first run: the turn it forks. The run ends after that turn when no
    # message waits (a golden test run waits for it as a child workflow); a later message starts
    # the session's workflow again, as after an idle hour.
    fork: ForkStart | None = None


ReplayAction = Literal["play", "pause", "step", "jump", "stop"]


class ReplayControl(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Opswald's `POST /v1/replays/{id}/control`: `play` runs on; `pause` holds before `step` (or
    before the next step); `step` runs one more step and holds; `jump` runs on to `step` and holds
    before it; `stop` ends the replay (its turn is cancelled)."""

    action: ReplayAction
    step: Annotated[int, Meta(ge=1)] | None = None


class ReplayState(msgspec.Struct, kw_only=True):
    """Where a fork's turn is: `current_step` is the last step let through (the steps before the
    fork count as done); `holding_at` the step it waits before (None: running, or done); `run_to`
    the last step it may run without another control (None: no limit)."""

    current_step: int
    holding_at: int | None = None
    run_to: int | None = None
    stopped: bool = False
    finished: bool = False


class ToolOutcome(msgspec.Struct, kw_only=True):
    tool_call_id: str
    status: ToolStatus


class ActCompleted(msgspec.Struct, kw_only=True):
    session_id: str
    turn_id: str
    iteration: int
    outcomes: list[ToolOutcome]


class ReasonInput(msgspec.Struct, kw_only=True):
    session_id: str
    turn_id: str
    input_message_id: str
    iteration: int
    # Chosen by the workflow, so every attempt streams and stores under the same id.
    message_id: str
    # The turn's first step: it stores the turn's opening events, and may give way to an earlier
    # unanswered message instead (`ReasonResult.earlier_message_id`).
    open_turn: bool = False
    # The act before this step, whose completion this step stores in its first transaction.
    act: ActCompleted | None = None


class ToolCallRef(msgspec.Struct, kw_only=True):
    id: str
    name: str
    timeout_s: float
    # Wait for a person's decision before running it (tool definition or the agent's configuration);
    # without one within `approval_timeout_s` (None: no limit) it is denied.
    require_approval: bool = False
    approval_timeout_s: float | None = None
    # A client-side tool (the agent's or the session's `tools`): the call waits for the client's
    # result (`POST .../tool-results`) for up to `result_timeout_s`, then gets an error result.
    client_side: bool = False
    result_timeout_s: float | None = None
    # A short, pure built-in tool (its capability's `local`): run as a local activity, inside the
    # worker's workflow task, without a round trip through the server's task queue. Decided by the
    # `reason` step and recorded with its result, so a replay takes the same path; a result stored
    # before this field existed decodes as False (a regular activity, as it ran then).
    local: bool = False


class ApprovalDecision(msgspec.Struct, kw_only=True):
    """A person's (or the timeout's) answer to a tool call that waits for approval."""

    tool_call_id: str
    decision: Literal["approve", "deny"]
    reason: str | None = None
    decided_by: Literal["user", "timeout"] = "user"
    user_id: str | None = None


class ReasonResult(msgspec.Struct, kw_only=True):
    message_id: str
    tool_calls: list[ToolCallRef]
    text_preview: str
    # The agent's step limit, read by a step that opened its turn.
    max_iterations: int | None = None
    # Set instead of a reply when a user message stored before this turn's has not been answered:
    # the workflow answers that one first (messages are handled in their stored order).
    earlier_message_id: str | None = None
    # Set instead of a reply when the session ended (Opswald's end) before this turn's first step:
    # the message was posted before the end, whose cancel found no turn running yet.
    session_ended: bool = False


class ToolInput(msgspec.Struct, kw_only=True):
    session_id: str
    turn_id: str
    iteration: int
    message_id: str  # the agent message that holds the call
    tool_call_id: str
    approval: ApprovalDecision | None = None  # for a call that waited for one
    # A client-side call whose result did not come within this many seconds: the step stores its
    # timeout result (or finds the result the API stored meanwhile) and runs nothing.
    client_timeout_s: float | None = None


class ToolResultsDelivered(msgspec.Struct, kw_only=True):
    """Client-side tool calls whose results the API has stored (each with its status): the workflow
    lets them go on. Ids and statuses only: the results themselves are in PostgreSQL."""

    outcomes: list[ToolOutcome]
    # The turn that asked for them: a run busy with another turn (or none) takes nothing, since a
    # provider may give a later turn's call an earlier call's id, and a client repeating its request
    # for the earlier call must not answer the later one. None (updates from before it): any turn.
    turn_id: str | None = None


class KeptToolResult(msgspec.Struct, kw_only=True):
    """A tool call's finished result, kept in its activity's heartbeat until it is stored: a later
    attempt (the worker died while the database was away) stores it without running the tool again."""

    status: ToolStatus
    result: Any = None
    error: str | None = None


class TurnEnd(msgspec.Struct, kw_only=True):
    session_id: str
    turn_id: str
    input_message_id: str
    outcome: TurnOutcome
    iterations: int
    duration_ms: int
    error: str | None = None
    error_code: str | None = None
    # Set when the user should be told in the conversation what went wrong.
    notice_message_id: str | None = None
    # The turn's last act, whose completion no step came after to store. (Its opening events are
    # stored here too if its first step did not get that far.)
    act: ActCompleted | None = None
    # A forked session's turn (an Opswald replay): its end also stores the replay's result.
    fork: bool = False


class LlmFailure(msgspec.Struct, kw_only=True):
    """Details of a failed LLM call, carried on the activity's ApplicationError."""

    status: int | None
    kind: str
    message: str


# The HTTP side of the waits: a client's results of client-side tool calls, and a batch of approval
# decisions, as Everruns' clients send them (`POST .../tool-results`, `POST .../tool-approvals`).

# At most this many results or decisions in one request: one reply never asks for more.
BATCH_MAX = 64
ToolCallId = Annotated[str, Meta(min_length=1, max_length=255)]


class ClientToolResult(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The client's answer to one client-side tool call: its `result` (any JSON), or an `error`."""

    tool_call_id: ToolCallId
    result: Any = None
    error: Annotated[str, Meta(max_length=10_000)] | None = None


class SubmitToolResults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tool_results: Annotated[list[ClientToolResult], Meta(min_length=1, max_length=BATCH_MAX)]


class ToolResultsAccepted(msgspec.Struct, kw_only=True):
    """As Everruns answers: how many results were accepted (a repeated identical one counts), and
    the session's status after them (`active` once no call of the reply waits any more)."""

    accepted: int
    status: str


# Everruns' decisions, and this server's own per-call ones. The `_always` forms (a rule for the rest
# of the session) are refused with a 400: each call here is decided on its own.
BatchDecision = Literal["allow", "reject", "allow_always", "reject_always", "approve", "deny"]


class ToolApprovalAnswer(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tool_call_id: ToolCallId
    decision: BatchDecision
    reason: Annotated[str, Meta(max_length=2000)] | None = None


class SubmitToolApprovals(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Decisions on the tool calls that wait for a person. A waiting call left out is not approved
    (denied), as on Everruns: silence never approves."""

    decisions: Annotated[list[ToolApprovalAnswer], Meta(min_length=1, max_length=BATCH_MAX)]


class ToolApprovalResolution(msgspec.Struct, kw_only=True):
    tool_call_id: str
    tool: str
    # `not_approved`: a waiting call the request left out.
    outcome: Literal["allow", "reject", "not_approved"]


class ToolApprovalsResolved(msgspec.Struct, kw_only=True):
    resolved: list[ToolApprovalResolution]
    status: str  # the session's status
