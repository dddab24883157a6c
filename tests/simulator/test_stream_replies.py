"""A reason step's reply read off litellm's chunks (`Reply.of_stream`) is the one
`litellm.stream_chunk_builder` assembles (what the worker used before issue 18), and the cost lookup's
cache and stated price change no figure. The calls go as the worker makes them
(`activities.provider.stream_call`) to the simulator over HTTP."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import litellm
import pytest
from litellm.types.utils import (
    ChatCompletionDeltaToolCall,
    Delta,
    Function,
    ModelResponseStream,
    StreamingChoices,
)

from activities.provider import stream_call
from services import model_calls
from services.model_calls import Reply

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} tool",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    for name in ("get_weather", "get_time")
]
LONG_ARGUMENTS = {"city": "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch " * 4}
SCRIPTS: dict[str, dict[str, Any]] = {
    "text": {"mode": "echo"},
    "one tool call": {
        "mode": "script",
        "script": [{"tool_calls": [{"name": "get_weather", "arguments": {}}]}],
    },
    "two tool calls with long arguments": {
        "mode": "script",
        "script": [
            {
                "tool_calls": [
                    {"name": "get_weather", "arguments": LONG_ARGUMENTS},
                    {"name": "get_time", "arguments": {"city": "Paris"}},
                ]
            }
        ],
    },
    "text and a tool call": {
        "mode": "script",
        "script": [
            {"text": "Let me look that up.", "tool_calls": [{"name": "get_time", "arguments": {"x": 1}}]}
        ],
    },
}


def params(simulator_url: str, simulator: dict[str, Any], model: str = "openai/sim-1") -> dict[str, Any]:
    return {
        "model": model,
        "api_base": simulator_url,
        "api_key": "sim",
        "extra_body": {"simulator": simulator},
    }


def messages() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"weather and time in Paris {uuid.uuid4().hex[:8]}"},
    ]


async def nothing(delta: str) -> None:
    pass


def as_builder_would(chunks: list[Any], prompt: list[dict[str, Any]], model: str) -> Reply:
    return Reply.of(litellm.stream_chunk_builder(chunks, messages=prompt), model, 7, TOOLS)


@pytest.mark.parametrize("case", list(SCRIPTS))
async def test_the_reply_read_off_the_chunks_is_the_builders(simulator_url: str, case: str) -> None:
    call = params(simulator_url, SCRIPTS[case])
    prompt = messages()
    chunks = await stream_call(call, prompt, TOOLS, None, nothing)
    reply = Reply.of_stream(chunks, prompt, call["model"], 7, TOOLS)
    assert reply == as_builder_would(chunks, prompt, call["model"])
    assert reply.input_tokens > 0 and reply.output_tokens > 0
    if case != "text":
        assert reply.calls and reply.finish_reason == "tool_calls"
    if case == "two tool calls with long arguments":
        assert [c.name for c in reply.calls] == ["get_weather", "get_time"]
        assert reply.calls[0].arguments == LONG_ARGUMENTS


def chunk(delta: Delta, finish_reason: str | None = None, **extra: Any) -> ModelResponseStream:
    return ModelResponseStream(
        id="chatcmpl-1",
        choices=[StreamingChoices(index=0, delta=delta, finish_reason=finish_reason)],
        **extra,
    )


def fragment(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> Delta:
    call = ChatCompletionDeltaToolCall(
        index=index, id=call_id, function=Function(name=name, arguments=arguments)
    )
    return Delta(tool_calls=[call])


def interleaved() -> list[ModelResponseStream]:
    """Two calls whose fragments interleave (as some providers send parallel calls), a third with no
    name (dropped by the builder), no finish reason reported."""
    return [
        chunk(Delta(role="assistant", content="")),
        chunk(fragment(1, "", "call_b", "get_time")),
        chunk(fragment(0, '{"ci', "call_a", "get_weather")),
        chunk(fragment(1, '{"city": "Paris"}')),
        chunk(fragment(0, 'ty": "Rome"}')),
        chunk(fragment(2, '{"x": 1}', "call_c")),
    ]


def test_interleaved_fragments_join_by_index_as_the_builder_joins_them() -> None:
    usage = litellm.Usage(prompt_tokens=11, completion_tokens=5, total_tokens=16)
    chunks = [*interleaved(), ModelResponseStream(id="chatcmpl-1", choices=[], usage=usage)]
    prompt = messages()
    reply = Reply.of_stream(chunks, prompt, "openai/sim-1", 7, TOOLS)
    assert reply == as_builder_would(chunks, prompt, "openai/sim-1")
    assert [(c.id, c.arguments) for c in reply.calls] == [
        ("call_a", {"city": "Rome"}),
        ("call_b", {"city": "Paris"}),
    ]
    assert (reply.input_tokens, reply.output_tokens, reply.finish_reason) == (11, 5, "stop")


def test_a_stream_without_usage_goes_through_the_builder_which_counts_the_tokens() -> None:
    chunks = [chunk(Delta(role="assistant", content="Hello there")), chunk(Delta(), "stop")]
    prompt = messages()
    reply = Reply.of_stream(chunks, prompt, "openai/sim-1", 7, TOOLS)
    assert reply == as_builder_would(chunks, prompt, "openai/sim-1")
    assert reply.text == "Hello there" and reply.input_tokens > 0 and reply.output_tokens > 0


def test_cost_of_remembers_only_a_model_litellm_cannot_price() -> None:
    unknown = f"openai/sim-{uuid.uuid4().hex[:8]}"
    assert unknown not in model_calls._UNPRICED
    assert model_calls.cost_of(unknown, 1000, 1000) == Decimal(0)
    assert unknown in model_calls._UNPRICED
    assert model_calls.cost_of(unknown, 1000, 1000) == Decimal(0)
    prompt, completion = litellm.cost_per_token(
        model="openai/gpt-4o-mini", prompt_tokens=1000, completion_tokens=10
    )
    assert model_calls.cost_of("openai/gpt-4o-mini", 1000, 10) == Decimal(str(prompt + completion)) > 0
    assert "openai/gpt-4o-mini" not in model_calls._UNPRICED
    assert model_calls.priced({"model": "openai/gpt-4o-mini"}) == {"model": "openai/gpt-4o-mini"}
    assert model_calls.priced({"model": unknown}) == {
        "model": unknown,
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
    }


async def test_a_stated_price_changes_neither_the_reply_nor_litellms_table(simulator_url: str) -> None:
    unknown = f"openai/sim-{uuid.uuid4().hex[:8]}"
    model_calls.cost_of(unknown, 1, 1)
    call = model_calls.priced(params(simulator_url, SCRIPTS["text and a tool call"], unknown))
    assert call["input_cost_per_token"] == 0.0
    prompt = messages()
    chunks = await stream_call(call, prompt, TOOLS, None, nothing)
    reply = Reply.of_stream(chunks, prompt, unknown, 7, TOOLS)
    assert reply == as_builder_would(chunks, prompt, unknown)
    assert reply.cost == Decimal(0) and reply.text == "Let me look that up." and reply.calls
    assert unknown not in litellm.model_cost
    with pytest.raises(litellm.exceptions.ModelNotMappedError):
        litellm.cost_per_token(model=unknown, prompt_tokens=1, completion_tokens=1)
