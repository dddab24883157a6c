"""The simulator through the real litellm path (OpenAI provider, openai SDK, HTTP to uvicorn)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from litellm.exceptions import (
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    Timeout,
)

from tests.simulator.helpers import complete, rebuild, stream, user

WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
TIME = {"name": "get_time", "arguments": {"timezone": "Europe/Paris"}}


def _text(chunks: list[Any]) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def _tool_calls(response: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (c.function.name, json.loads(c.function.arguments)) for c in response.choices[0].message.tool_calls
    ]


async def test_echo_answers_the_last_user_message(simulator_url: str) -> None:
    first, last = user("first"), user("how are you?")
    response = await complete(simulator_url, [first, {"role": "assistant", "content": "fine"}, last])
    choice = response.choices[0]
    assert choice.message.content == f"Echo: {last['content']}"
    assert choice.finish_reason == "stop"
    assert response.model == "sim-1"
    usage = response.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_echo_streams_word_by_word_with_usage(simulator_url: str) -> None:
    message = user("one two three four five")
    chunks = await stream(simulator_url, [message])
    expected = f"Echo: {message['content']}"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == len(expected.split())
    assert _text(chunks) == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    usage = chunks[-1].usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    rebuilt = rebuild(chunks)
    assert rebuilt.choices[0].message.content == expected


async def test_fixed_text(simulator_url: str) -> None:
    simulator = {"mode": "fixed", "text": "The answer is 42."}
    response = await complete(simulator_url, [user()], simulator)
    assert response.choices[0].message.content == "The answer is 42."
    assert _text(await stream(simulator_url, [user()], simulator)) == "The answer is 42."


async def test_script_single_tool_call(simulator_url: str) -> None:
    response = await complete(
        simulator_url, [user()], {"mode": "script", "script": [{"tool_calls": [WEATHER]}]}
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content
    assert _tool_calls(response) == [("get_weather", {"city": "Paris", "unit": "celsius"})]
    assert choice.message.tool_calls[0].id.startswith("call_")


async def test_script_parallel_tool_calls_with_text(simulator_url: str) -> None:
    simulator = {"mode": "script", "script": [{"text": "Checking both.", "tool_calls": [WEATHER, TIME]}]}
    response = await complete(simulator_url, [user()], simulator)
    assert response.choices[0].message.content == "Checking both."
    assert _tool_calls(response) == [
        ("get_weather", {"city": "Paris", "unit": "celsius"}),
        ("get_time", {"timezone": "Europe/Paris"}),
    ]
    ids = [call.id for call in response.choices[0].message.tool_calls]
    assert len(set(ids)) == 2


async def test_streamed_parallel_tool_calls(simulator_url: str) -> None:
    simulator = {"mode": "script", "script": [{"text": "Checking both.", "tool_calls": [WEATHER, TIME]}]}
    chunks = await stream(simulator_url, [user()], simulator)
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    # Per call: one delta with index, id and name, then argument fragments carrying only the index.
    for index, expected in enumerate([WEATHER, TIME]):
        mine = [d for d in deltas if d.index == index]
        assert mine[0].id and mine[0].function.name == expected["name"]
        assert all(d.id is None and not d.function.name for d in mine[1:])
        assert len(mine) > 2
        assert json.loads("".join(d.function.arguments or "" for d in mine)) == expected["arguments"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]
    rebuilt = rebuild(chunks)
    assert _tool_calls(rebuilt) == [
        ("get_weather", {"city": "Paris", "unit": "celsius"}),
        ("get_time", {"timezone": "Europe/Paris"}),
    ]
    assert rebuilt.choices[0].message.content == "Checking both."
    assert rebuilt.usage.completion_tokens > 0


async def test_script_walks_an_agent_loop(simulator_url: str) -> None:
    simulator = {
        "mode": "script",
        "script": [{"tool_calls": [WEATHER]}, {"tool_calls": [TIME, WEATHER]}, "It is sunny in Paris."],
        "final_text": "Nothing more to say.",
    }
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}, user("weather?")]
    seen: list[list[str]] = []
    for _ in range(2):
        response = await complete(simulator_url, messages, simulator)
        message = response.choices[0].message
        seen.append([call.function.name for call in message.tool_calls])
        messages.append(message.model_dump())  # litellm's own fields ride along and are ignored
        messages += [
            {"role": "tool", "tool_call_id": call.id, "content": "ok"} for call in message.tool_calls
        ]
    assert seen == [["get_weather"], ["get_time", "get_weather"]]
    response = await complete(simulator_url, messages, simulator)
    assert response.choices[0].message.content == "It is sunny in Paris."
    assert response.choices[0].finish_reason == "stop"
    messages.append({"role": "assistant", "content": "It is sunny in Paris."})
    past_end = await complete(simulator_url, messages, simulator)
    assert past_end.choices[0].message.content == "Nothing more to say."
    # A new user message restarts the script.
    restarted = await complete(simulator_url, [*messages, user("and tomorrow?")], simulator)
    assert [call.function.name for call in restarted.choices[0].message.tool_calls] == ["get_weather"]


async def test_past_the_end_repeats_the_last_step(simulator_url: str) -> None:
    simulator = {"mode": "script", "script": ["first", "last"]}
    history = [user(), {"role": "assistant", "content": "first"}, {"role": "assistant", "content": "last"}]
    response = await complete(simulator_url, history, simulator)
    assert response.choices[0].message.content == "last"


async def test_tool_call_ids_are_stable_across_retries(simulator_url: str) -> None:
    simulator = {"mode": "script", "script": [{"tool_calls": [WEATHER, TIME]}]}
    messages = [user()]
    first = await complete(simulator_url, messages, simulator)
    again = await complete(simulator_url, messages, simulator)
    streamed = rebuild(await stream(simulator_url, messages, simulator))
    ids = [call.id for call in first.choices[0].message.tool_calls]
    assert ids == [call.id for call in again.choices[0].message.tool_calls]
    assert ids == [call.id for call in streamed.choices[0].message.tool_calls]
    other = await complete(simulator_url, [user()], simulator)
    assert not set(ids) & {call.id for call in other.choices[0].message.tool_calls}


ERRORS = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (404, NotFoundError),
    (429, RateLimitError),
    (500, InternalServerError),
    (503, ServiceUnavailableError),
]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("status", "exception"), ERRORS, ids=[str(s) for s, _ in ERRORS])
async def test_injected_errors_raise_the_matching_litellm_exception(
    simulator_url: str, status: int, exception: type[Exception], streamed: bool
) -> None:
    with pytest.raises(exception) as info:
        await complete(simulator_url, [user()], {"error": {"status": status}}, stream=streamed)
    assert type(info.value) is exception
    assert getattr(info.value, "status_code", None) == status
    assert "Simulated" in str(info.value)


async def test_a_custom_error_message_can_steer_litellm(simulator_url: str) -> None:
    error = {"status": 400, "message": "This model's maximum context length is 8 tokens."}
    with pytest.raises(ContextWindowExceededError):
        await complete(simulator_url, [user()], {"error": error})


async def test_fail_the_first_n_then_succeed(simulator_url: str) -> None:
    simulator = {"mode": "fixed", "text": "recovered", "error": {"status": 500, "times": 2}}
    messages = [user()]
    for _ in range(2):
        with pytest.raises(InternalServerError):
            await complete(simulator_url, messages, simulator)
    response = await complete(simulator_url, messages, simulator)
    assert response.choices[0].message.content == "recovered"
    # The count is per conversation: another one fails afresh.
    with pytest.raises(InternalServerError):
        await complete(simulator_url, [user()], simulator)


async def test_litellm_retries_through_injected_rate_limits(simulator_url: str) -> None:
    error = {"status": 429, "times": 2, "retry_after": 0.01}
    simulator = {"mode": "fixed", "text": "third time lucky", "error": error}
    with pytest.raises(RateLimitError):  # two attempts, two failures
        await complete(simulator_url, [user()], simulator, num_retries=1)
    response = await complete(simulator_url, [user()], simulator, num_retries=2)
    assert response.choices[0].message.content == "third time lucky"


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
async def test_timeout_raises_litellm_timeout_then_succeeds(simulator_url: str, streamed: bool) -> None:
    simulator = {
        "mode": "fixed",
        "text": "finally",
        "error": {"status": "timeout", "times": 1, "timeout_seconds": 60},
    }
    messages = [user()]
    started = time.monotonic()
    with pytest.raises(Timeout):
        await complete(simulator_url, messages, simulator, timeout=0.5, stream=streamed)
    assert time.monotonic() - started < 30  # the client gave up; the simulator did not answer
    response = await complete(simulator_url, messages, simulator, timeout=10)
    assert response.choices[0].message.content == "finally"


async def test_a_hang_shorter_than_the_client_timeout_is_just_slow(simulator_url: str) -> None:
    simulator = {"mode": "fixed", "text": "slow", "error": {"status": "timeout", "timeout_seconds": 0.3}}
    started = time.monotonic()
    response = await complete(simulator_url, [user()], simulator, timeout=10)
    assert time.monotonic() - started >= 0.3
    assert response.choices[0].message.content == "slow"


async def test_first_token_delay(simulator_url: str) -> None:
    started = time.monotonic()
    response = await complete(simulator_url, [user()], {"first_token_delay": 0.4})
    assert time.monotonic() - started >= 0.4
    assert response.choices[0].message.content.startswith("Echo: ")


async def test_streamed_latency(simulator_url: str) -> None:
    simulator = {"mode": "fixed", "text": "a b c d e f", "first_token_delay": 0.3, "chunk_delay": 0.05}
    started = time.monotonic()
    response = await complete(
        simulator_url, [user()], simulator, stream=True, stream_options={"include_usage": True}
    )
    arrivals: list[float] = []
    chunks = []
    async for chunk in response:
        arrivals.append(time.monotonic() - started)
        chunks.append(chunk)
    assert _text(chunks) == "a b c d e f"
    assert arrivals[0] >= 0.3
    # role, six words, finish reason and usage: eight gaps of at least 0.05 s after the first.
    assert arrivals[-1] >= 0.3 + 8 * 0.05


async def test_a_bad_simulator_config_is_a_bad_request(simulator_url: str) -> None:
    with pytest.raises(BadRequestError) as info:
        await complete(simulator_url, [user()], {"mode": "scripted"})
    assert type(info.value) is BadRequestError
    assert "simulator.mode" in str(info.value)
