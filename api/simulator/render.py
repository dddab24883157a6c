"""A reply as OpenAI sends it: one `chat.completion`, or the `chat.completion.chunk`s of a stream."""

from __future__ import annotations

import re

from api.simulator.engine import Reply
from api.simulator.schemas import (
    ChatCompletion,
    ChatCompletionAssistantMessage,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionUsage,
    ChunkChoice,
    ChunkDelta,
    FunctionDelta,
    ToolCallDelta,
)

ARGUMENT_FRAGMENT_CHARS = 8


def completion(reply: Reply, *, response_id: str, created: int, model: str) -> ChatCompletion:
    message = ChatCompletionAssistantMessage(
        role="assistant", content=reply.text, tool_calls=reply.tool_calls or None
    )
    return ChatCompletion(
        id=response_id,
        created=created,
        model=model,
        choices=[ChatCompletionChoice(index=0, message=message, finish_reason=reply.finish_reason)],
        usage=reply.usage,
    )


def split_words(text: str) -> list[str]:
    """Words with their trailing whitespace: the pieces join back to exactly `text`."""
    return [piece for piece in re.findall(r"\S*\s*", text) if piece]


def chunks(
    reply: Reply, *, response_id: str, created: int, model: str, include_usage: bool
) -> list[ChatCompletionChunk]:
    """Role first, then the text a word at a time, then each tool call (index, id and name, then its
    arguments in fragments), then the finish reason, then usage if asked for."""
    deltas = [ChunkDelta(role="assistant", content="" if reply.text else None)]
    deltas += [ChunkDelta(content=word) for word in split_words(reply.text or "")]
    for index, call in enumerate(reply.tool_calls):
        head = FunctionDelta(name=call.function.name, arguments="")
        deltas.append(
            ChunkDelta(tool_calls=[ToolCallDelta(index=index, id=call.id, type="function", function=head)])
        )
        arguments = call.function.arguments
        for start in range(0, len(arguments), ARGUMENT_FRAGMENT_CHARS):
            fragment = FunctionDelta(arguments=arguments[start : start + ARGUMENT_FRAGMENT_CHARS])
            deltas.append(ChunkDelta(tool_calls=[ToolCallDelta(index=index, function=fragment)]))

    def chunk(choices: list[ChunkChoice], usage: ChatCompletionUsage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=response_id,
            object="chat.completion.chunk",
            created=created,
            model=model,
            choices=choices,
            usage=usage,
        )

    out = [chunk([ChunkChoice(index=0, delta=delta)]) for delta in deltas]
    out.append(chunk([ChunkChoice(index=0, delta=ChunkDelta(), finish_reason=reply.finish_reason)]))
    if include_usage:
        out.append(chunk([], reply.usage))
    return out
