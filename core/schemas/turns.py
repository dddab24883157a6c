"""Workflow and activity payloads of the session loop. Claim-check: ids and small summaries only;
activities read the conversation from Postgres."""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec


class SessionLoop:
    """The session workflow's contract, by name: what the API, the sweeper, the worker and the
    workflow itself must agree on. Its payloads follow below."""

    WORKFLOW: Final = "SessionWorkflow"
    # Signal: a stored user message for the session (its id).
    NEW_MESSAGE: Final = "new_message"
    # Updates: stop the running turn (-> bool); a person's decision on a tool call (-> the decision).
    CANCEL_TURN: Final = "cancel_turn"
    RESOLVE_APPROVAL: Final = "resolve_approval"
    # Queries: the running turn's id (or None); the tool calls waiting for a person.
    CURRENT_TURN: Final = "current_turn"
    PENDING_APPROVALS: Final = "pending_approvals"
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

ToolStatus = Literal["success", "error", "timeout", "cancelled", "denied"]
TurnOutcome = Literal["completed", "failed", "cancelled"]


class SessionInput(msgspec.Struct, kw_only=True):
    session_id: str
    agent_id: str
    # Carried across continue-as-new: messages waiting for a turn, and recently handled ones
    # (so a message signalled twice runs once).
    pending: list[str] = msgspec.field(default_factory=list)
    handled: list[str] = msgspec.field(default_factory=list)


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


class ToolInput(msgspec.Struct, kw_only=True):
    session_id: str
    turn_id: str
    iteration: int
    message_id: str  # the agent message that holds the call
    tool_call_id: str
    approval: ApprovalDecision | None = None  # for a call that waited for one


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


class LlmFailure(msgspec.Struct, kw_only=True):
    """Details of a failed LLM call, carried on the activity's ApplicationError."""

    status: int | None
    kind: str
    message: str
