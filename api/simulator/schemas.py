"""The OpenAI chat-completions wire format, as much of it as the simulator reads or writes.

Request structs accept and drop unknown fields, as an OpenAI-compatible server must: clients send
whatever their SDK version knows about.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from api.simulator.config import SimulatorConfig

# --- request ---------------------------------------------------------------------------------------


class ChatCompletionContentPart(msgspec.Struct, kw_only=True):
    type: str
    text: str | None = None


class ChatCompletionFunctionCall(msgspec.Struct, kw_only=True):
    name: str
    arguments: str


class ChatCompletionToolCall(msgspec.Struct, kw_only=True):
    id: str
    function: ChatCompletionFunctionCall
    type: str = "function"


class ChatCompletionMessage(msgspec.Struct, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ChatCompletionContentPart] | None = None
    name: str | None = None
    tool_calls: list[ChatCompletionToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content or () if part.text is not None)


class ChatCompletionFunction(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ChatCompletionTool(msgspec.Struct, kw_only=True):
    function: ChatCompletionFunction
    type: str = "function"


class ChatCompletionStreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, kw_only=True):
    """A standard chat-completions body plus the optional `simulator` object. Any model name is
    accepted; sampling parameters are accepted and do not change the answer; `tools` and
    `tool_choice` change it only in `agent` mode (which calls the offered tools)."""

    model: str
    messages: list[ChatCompletionMessage]
    stream: bool = False
    stream_options: ChatCompletionStreamOptions | None = None
    tools: list[ChatCompletionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    # As OpenAI's models do: false means at most one tool call per reply.
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    # `{"type": "json_schema", "json_schema": {"schema": ...}}`: `echo` mode answers a value valid
    # against the schema (api/simulator/structured.py); other modes answer as scripted.
    response_format: dict[str, Any] | None = None
    simulator: SimulatorConfig | None = None


# --- response --------------------------------------------------------------------------------------


class ChatCompletionUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionAssistantMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ChatCompletionToolCall] | None = None


class ChatCompletionChoice(msgspec.Struct, kw_only=True):
    index: int
    message: ChatCompletionAssistantMessage
    finish_reason: Literal["stop", "tool_calls"]


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: ChatCompletionUsage


class FunctionDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDelta


class ChunkDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(msgspec.Struct, kw_only=True):
    index: int
    delta: ChunkDelta
    finish_reason: Literal["stop", "tool_calls"] | None = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: ChatCompletionUsage | None = None


class SimulatorModel(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class SimulatorModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[SimulatorModel]


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    """OpenAI's embeddings body: one text or a list of texts (token arrays are not read)."""

    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


class Embedding(msgspec.Struct, kw_only=True):
    index: int
    embedding: list[float] | str
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct, kw_only=True):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    object: Literal["list"] = "list"


class OpenAIErrorDetail(msgspec.Struct, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(msgspec.Struct, kw_only=True):
    """OpenAI's error body, which litellm parses to pick its exception class."""

    error: OpenAIErrorDetail
