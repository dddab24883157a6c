"""What the simulated model answers: a pure function of the request, so a retried request (same model
and messages) gets the same answer, tool-call ids included."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

from api.simulator import agent, structured
from api.simulator.config import SimulatorConfig, SimulatorStep
from api.simulator.schemas import (
    ChatCompletionFunctionCall,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionToolCall,
    ChatCompletionUsage,
)

ECHO_PREFIX = "Echo: "


class Reply(msgspec.Struct, kw_only=True, frozen=True):
    text: str | None
    tool_calls: list[ChatCompletionToolCall]
    usage: ChatCompletionUsage

    @property
    def finish_reason(self) -> Literal["stop", "tool_calls"]:
        return "tool_calls" if self.tool_calls else "stop"


def fingerprint(request: ChatCompletionRequest) -> str:
    """Identifies a conversation: the model and every message (unknown fields dropped)."""
    return hashlib.sha256(msgspec.json.encode([request.model, request.messages])).hexdigest()


def estimate_tokens(text: str) -> int:
    """About four characters a token, rounded up: deterministic, and never 0 for non-empty text."""
    return -(-len(text) // 4)


def step_index(messages: list[ChatCompletionMessage]) -> int:
    """The number of assistant messages after the last user message: each user message restarts the
    script, and a user -> assistant(tool_calls) -> tool -> assistant ... loop walks it."""
    last_user = max((i for i, message in enumerate(messages) if message.role == "user"), default=-1)
    return sum(1 for message in messages[last_user + 1 :] if message.role == "assistant")


def tool_call_id(conversation: str, step: int, index: int) -> str:
    return "call_" + hashlib.sha256(f"{conversation}:{step}:{index}".encode()).hexdigest()[:24]


def plan_reply(request: ChatCompletionRequest, config: SimulatorConfig, conversation: str) -> Reply:
    step, index = _step(request, config)
    calls = [
        ChatCompletionToolCall(
            id=tool_call_id(conversation, index, position),
            function=ChatCompletionFunctionCall(
                name=call.name, arguments=msgspec.json.encode(call.arguments).decode()
            ),
        )
        for position, call in enumerate(step.tool_calls)
    ]
    if request.parallel_tool_calls is False:
        calls = calls[:1]  # a model told not to call tools in parallel asks for one at a time
    completion_tokens = estimate_tokens(step.text or "") + sum(_call_tokens(call) for call in calls)
    prompt_tokens = sum(_message_tokens(message) for message in request.messages)
    usage = ChatCompletionUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )
    return Reply(text=step.text, tool_calls=calls, usage=usage)


def _step(request: ChatCompletionRequest, config: SimulatorConfig) -> tuple[SimulatorStep, int]:
    if config.mode == "fixed":
        return SimulatorStep(text=config.text), 0
    if config.mode == "echo":
        echo = ECHO_PREFIX + _last_user_text(request.messages)
        schema = json_schema(request)
        if schema is not None:
            return SimulatorStep(text=msgspec.json.encode(structured.instance(schema, echo)).decode()), 0
        return SimulatorStep(text=echo), 0
    if config.mode == "agent":
        # The step index keeps tool-call ids distinct between the calls of one user message's turn.
        index = step_index(request.messages)
        planned = agent.step(request)
        schema = json_schema(request)
        if schema is not None and planned.text is not None and not planned.tool_calls:
            # Structured output as in `echo` mode: a value valid against the schema, saying the text.
            text = msgspec.json.encode(structured.instance(schema, planned.text)).decode()
            return SimulatorStep(text=text), index
        return planned, index
    steps = config.steps()
    if config.count_from == "start":
        index = sum(1 for message in request.messages if message.role == "assistant")
    else:
        index = step_index(request.messages)
    if index < len(steps):
        return steps[index], index
    if config.final_text is not None:
        return SimulatorStep(text=config.final_text), index
    return steps[-1], index


def json_schema(request: ChatCompletionRequest) -> Any:
    """The schema of a `json_schema` response format, or None."""
    form = request.response_format or {}
    if form.get("type") != "json_schema" or not isinstance(form.get("json_schema"), dict):
        return None
    return form["json_schema"].get("schema", {})


def _last_user_text(messages: list[ChatCompletionMessage]) -> str:
    return next((m.text() for m in reversed(messages) if m.role == "user"), "(no user message)")


def _message_tokens(message: ChatCompletionMessage) -> int:
    return estimate_tokens(message.text()) + sum(_call_tokens(call) for call in message.tool_calls or ())


def _call_tokens(call: ChatCompletionToolCall) -> int:
    return estimate_tokens(call.function.name + call.function.arguments)
