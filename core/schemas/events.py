"""Session events: the envelope every stored event has, and the payload (`data`) of each event type.

The payload Structs are the event stream's contract (the events list, SSE, and what reads the log
later): one Struct per type, tagged by `type` as the content parts are, and `EventData` their union;
`EphemeralData` likewise for the live-only frames. Events are built from them
(`services.events.append`, `NewEvent`, `activities.deps.EventBatch.add`), so a misspelt type or a
missing field is a type error. The tag is the envelope's `type` and is not repeated inside `data`:
`to_data` drops it and `from_data` puts it back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

import msgspec
from msgspec import UNSET, UnsetType

from core.schemas.content import TextPart, ToolCallPart, ToolResultPart, result_parts
from core.schemas.llm import ProviderType
from core.schemas.sessions import Message, MessageRole
from core.schemas.turns import ToolStatus


class EventContext(msgspec.Struct, kw_only=True):
    turn_id: str | None = None
    input_message_id: str | None = None
    exec_id: str | None = None


class Event(msgspec.Struct, kw_only=True):
    """A stored event as the API sends it; `data` is the payload of its `type` (`EventData`)."""

    id: uuid.UUID
    type: str
    ts: datetime
    session_id: uuid.UUID
    sequence: int
    context: EventContext
    data: dict[str, Any]
    metadata: dict[str, Any] | None
    tags: list[str]


class LiveEvent(msgspec.Struct, kw_only=True):
    """A live-only frame as the stream sends it (`EphemeralData` in `data`): the stored envelope's
    fields, so clients parse every frame alike (Everruns' SDK requires `id`, `session_id`, `ts`,
    `type` and `data` on each). `sequence` is null: it is never stored. `id` is given per reader
    position by the stream (`services.event_log.live_id`): it names the last stored event that reader
    was sent, so resuming from it (`since_id`, `Last-Event-ID`) misses nothing and repeats nothing."""

    id: uuid.UUID
    type: str
    ts: datetime
    session_id: uuid.UUID
    sequence: None = None
    context: EventContext
    data: dict[str, Any]
    metadata: None = None
    tags: list[str] = msgspec.field(default_factory=list)


class Payload(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    """What every event payload shares: its event type is its tag."""


class _Part(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A nested part of a payload."""


# A turn opens: session.activated, turn.started, input.received (stored by the turn's first step).


class SessionActivated(Payload, tag="session.activated"):
    turn_id: str
    input_message_id: str


class TurnStarted(Payload, tag="turn.started"):
    turn_id: str
    input_message_id: str


class InputReceived(Payload, tag="input.received"):
    """The user message the turn answers."""

    message: Message


# A step: reason.started, then llm.generation, message.agent, output.message.completed,
# reason.completed once the reply is in.


class ReasonStep(_Part):
    model: str  # the provider's model name
    iteration: int


class ReasonStarted(Payload, tag="reason.started"):
    agent_id: str
    metadata: ReasonStep


class HistoryRef(_Part):
    """A message of the conversation the LLM was given."""

    message_id: str
    role: MessageRole


class ToolSummary(_Part):
    """A tool the LLM was offered."""

    name: str
    description: str


class LlmOutput(_Part):
    text: str
    tool_calls: list[ToolCallPart]


class TokenUsage(_Part):
    input_tokens: int
    output_tokens: int


class GenerationMetadata(_Part):
    model: str  # the model name the call went out with
    provider: ProviderType
    usage: TokenUsage
    cost: float  # USD, from litellm's price table; 0 for a model it does not know
    duration_ms: int
    success: bool  # always true: a failed call fails the step and stores no generation
    error: str | None
    finish_reasons: list[str | None]
    response_id: str | None


class LlmGeneration(Payload, tag="llm.generation"):
    """One LLM call: what it was given (message ids, prompt, tools) and what came back."""

    messages: list[HistoryRef]
    system_prompt: str
    tools: list[ToolSummary]
    output: LlmOutput
    metadata: GenerationMetadata


class MessageAgent(Payload, tag="message.agent"):
    """An agent message: the LLM's reply (`metadata` the message's own, with `usage`), or the notice
    that tells the user why a turn failed (`metadata` `{"error": true}`, no `usage`)."""

    message: Message
    metadata: dict[str, Any] | None
    usage: TokenUsage | UnsetType = UNSET

    @classmethod
    def notice(cls, message: Message) -> MessageAgent:
        """The event of a failure notice."""
        return cls(message=message, metadata={"error": True})


class OutputMessageCompleted(Payload, tag="output.message.completed"):
    """The agent message of a reply, complete: the same `message`, `metadata` and `usage` as the
    step's `message.agent`, under the type Everruns' clients read a reply from (its SDK's
    `AgentClient.run()` returns this message's text; its UI shows it)."""

    message: Message
    metadata: dict[str, Any] | None
    usage: TokenUsage | UnsetType = UNSET

    @classmethod
    def of(cls, said: MessageAgent) -> OutputMessageCompleted:
        return cls(message=said.message, metadata=said.metadata, usage=said.usage)


class ReasonCompleted(Payload, tag="reason.completed"):
    success: bool  # always true, as for llm.generation
    text_preview: str  # the reply's first 200 characters
    has_tool_calls: bool
    tool_call_count: int
    error: str | None


# An act: act.started, per call tool.approval_requested / tool.approval_resolved when it waits for a
# person, tool.call_started and tool.call_completed, then act.completed (stored by the next step, or
# by the turn's end).


class ToolCallName(_Part):
    id: str
    name: str


class ActStarted(Payload, tag="act.started"):
    tool_calls: list[ToolCallName]


class ToolApprovalRequested(Payload, tag="tool.approval_requested"):
    tool_call_id: str
    tool_name: str
    arguments: dict[str, Any]
    approval_timeout_s: float | None  # null: it waits as long as it takes


class ToolApprovalResolved(Payload, tag="tool.approval_resolved"):
    """A person's decision (`decided_by` `user`, with their `user_id`), or the timeout's (`deny`)."""

    tool_call_id: str
    decision: Literal["approve", "deny"]
    reason: str | None
    decided_by: Literal["user", "timeout"]
    user_id: str | None
    tool_name: str


class ToolCallStarted(Payload, tag="tool.call_started"):
    tool_call: ToolCallPart


class ToolCallCompleted(Payload, tag="tool.call_completed", kw_only=True):
    """A call's result, as Everruns sends it: `result` the text parts of the tool message's
    `tool_result` part (one, holding the result's JSON), absent when the call failed (`error`)."""

    tool_call_id: str
    tool_name: str
    success: bool
    status: ToolStatus
    result: list[TextPart] | UnsetType = UNSET
    error: str | None

    @classmethod
    def of(cls, part: ToolResultPart, tool_name: str, status: ToolStatus) -> ToolCallCompleted:
        """The event of the tool message whose part is `part` (`content.tool_result_part`)."""
        parts = result_parts(part)
        return cls(
            tool_call_id=part.tool_call_id,
            tool_name=tool_name,
            success=status == "success",
            status=status,
            result=UNSET if parts is None else parts,
            error=part.error,
        )


class ActCompleted(Payload, tag="act.completed"):
    completed: bool  # always true
    success_count: int
    error_count: int


class ToolCallRequested(Payload, tag="tool.call_requested"):
    """The reply's calls of client-side tools (the agent's or the session's `tools`), stored with
    the reply: the client runs them and answers with `POST .../tool-results`; the turn waits (the
    session is `waitingfortoolresults`) for up to `timeout_s`. Then each gets `tool.call_completed`."""

    tool_calls: list[ToolCallPart]
    timeout_s: float


# A turn ends: one of turn.completed, turn.failed, turn.cancelled, then session.idled (unless a
# later turn has started).


class TurnCompleted(Payload, tag="turn.completed"):
    turn_id: str
    iterations: int
    duration_ms: int


class TurnFailed(Payload, tag="turn.failed"):
    turn_id: str
    error: str | None
    error_code: str | None


class TurnCancelled(Payload, tag="turn.cancelled"):
    turn_id: str


class SessionIdled(Payload, tag="session.idled"):
    turn_id: str
    iterations: int


# Outside turns.


class MessageUser(Payload, tag="message.user"):
    """A user message, stored by its POST."""

    message: Message


# Live-only frames: published, never stored, no `sequence`; sent in a `LiveEvent` envelope.


class OutputMessageDelta(Payload, tag="output.message.delta"):
    """The next piece of the reply being streamed as message `message_id`."""

    message_id: str
    delta: str


class OutputMessageReset(Payload, tag="output.message.reset"):
    """A step's call is tried again: drop what was streamed for `message_id` so far."""

    message_id: str
    attempt: int


EventData = (
    SessionActivated
    | TurnStarted
    | InputReceived
    | ReasonStarted
    | LlmGeneration
    | MessageAgent
    | OutputMessageCompleted
    | ReasonCompleted
    | ActStarted
    | ToolApprovalRequested
    | ToolApprovalResolved
    | ToolCallStarted
    | ToolCallCompleted
    | ActCompleted
    | ToolCallRequested
    | TurnCompleted
    | TurnFailed
    | TurnCancelled
    | SessionIdled
    | MessageUser
)
EphemeralData = OutputMessageDelta | OutputMessageReset

STORED: tuple[type[Payload], ...] = get_args(EventData)
EPHEMERAL: tuple[type[Payload], ...] = get_args(EphemeralData)


def type_of(payload: Payload | type[Payload]) -> str:
    """The event type of a payload (or a payload Struct): its tag."""
    tag = payload.__struct_config__.tag
    assert isinstance(tag, str), payload
    return tag


# The types that end a turn: each turn stores exactly one of them.
TURN_ENDS: tuple[str, ...] = tuple(type_of(end) for end in (TurnCompleted, TurnFailed, TurnCancelled))


def to_data(payload: Payload) -> dict[str, Any]:
    """A payload as an event's `data` holds it, stored and sent: its fields, without the tag."""
    data: dict[str, Any] = msgspec.to_builtins(payload)
    del data["type"]
    return data


def from_data(type_: str, data: dict[str, Any]) -> EventData:
    """A stored event's payload; a ValidationError if it is not what its type carries."""
    payload: EventData = msgspec.convert({**data, "type": type_}, EventData)
    return payload
