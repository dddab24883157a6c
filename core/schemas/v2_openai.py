"""OpenAI's chat-completions wire format, as `/v2/openai/chat/completions` takes and answers it (the
`openai` SDK's `chat.completions.create`). Messages, tools and choices are kept as OpenAI's JSON
(passed to litellm and back as they are): their many shapes are OpenAI's to define, and litellm
checks them against the provider's."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Messages = Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1)]
Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]
Tokens = Annotated[int, msgspec.Meta(ge=1)]


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, kw_only=True):
    """The request fields forwarded to the model. Other fields OpenAI defines (`store`, `metadata`,
    `logit_bias`, `n`...) are accepted and ignored, as OpenAI-compatible servers do, so a client
    that sends them keeps working."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=400)]
    messages: Messages
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: Temperature | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    max_tokens: Tokens | None = None
    max_completion_tokens: Tokens | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    user: str | None = None


# The request fields sent on to litellm when set (`stream` and `stream_options` are handled apart).
FORWARDED = (
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "reasoning_effort",
    "user",
)


class ChatCompletion(msgspec.Struct, kw_only=True):
    """OpenAI's `chat.completion` object."""

    id: str
    object: str
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, Any] | None = None
    system_fingerprint: str | None = None
