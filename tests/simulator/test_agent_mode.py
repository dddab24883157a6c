"""`agent` mode, the simulator as a small tool-using model: through litellm over HTTP with the real
capabilities' tool schemas, and through a whole turn of the loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from capabilities import registry
from tests.loop import conftest as loop_setup
from tests.loop.conftest import Loop
from tests.simulator.helpers import complete, rebuild, stream

AGENT = {"mode": "agent"}
loop = loop_setup.loop  # the loop tier's fixture: an in-process worker, the simulator over HTTP


def tools(*capabilities: str) -> list[dict[str, Any]]:
    """The capabilities' tools as the reason activity offers them."""
    specs = [registry.get(capability) for capability in capabilities]
    return [
        {
            "type": "function",
            "function": {"name": d.name, "description": d.description, "parameters": d.parameters},
        }
        for spec in specs
        if spec is not None
        for d in (tool.definition() for tool in spec.tools)
    ]


def calls(response: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (c.function.name, json.loads(c.function.arguments))
        for c in response.choices[0].message.tool_calls or ()
    ]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.mark.parametrize(
    ("text", "call"),
    [
        ("what is 12 times 7?", ("multiply", {"a": 12, "b": 7})),
        ("What is twelve times seven?", ("multiply", {"a": 12, "b": 7})),
        ("add 2.5 and 4", ("add", {"a": 2.5, "b": 4})),
        ("12 + 30 = ?", ("add", {"a": 12, "b": 30})),
        ("subtract 3 from 10", ("subtract", {"a": 10, "b": 3})),
        ("what's 10 divided by 4?", ("divide", {"a": 10, "b": 4})),
        ("what is the product of -6 and 9", ("multiply", {"a": -6, "b": 9})),
    ],
)
async def test_a_math_question_calls_the_tool_with_the_numbers(
    simulator_url: str, text: str, call: tuple[str, dict[str, Any]]
) -> None:
    response = await complete(simulator_url, [user(text)], AGENT, tools=tools("test_math"))
    assert response.choices[0].finish_reason == "tool_calls"
    assert calls(response) == [call]


@pytest.mark.parametrize(
    ("text", "call"),
    [
        ("What's the weather in Paris?", ("get_weather", {"city": "Paris"})),
        ("weather in new york today", ("get_weather", {"city": "new york"})),
        (
            "forecast for Lisbon for 5 days in fahrenheit",
            ("get_forecast", {"city": "Lisbon", "days": 5, "units": "fahrenheit"}),
        ),
        ("what time is it?", ("get_current_time", {})),
        ("fetch https://example.com/page?x=1 please", ("web_fetch", {"url": "https://example.com/page?x=1"})),
        (
            "write a file called notes.txt with hello",
            ("write_file", {"path": "notes.txt", "content": "hello"}),
        ),
        (
            "what time is it in Asia/Tokyo, as unix",
            ("get_current_time", {"timezone": "Asia/Tokyo", "format": "unix"}),
        ),
    ],
)
async def test_strings_enums_and_optional_parameters_come_from_the_text(
    simulator_url: str, text: str, call: tuple[str, dict[str, Any]]
) -> None:
    offered = tools("test_math", "test_weather", "current_time", "web_fetch", "session_file_system")
    response = await complete(simulator_url, [user(text)], AGENT, tools=offered)
    assert calls(response) == [call]


async def test_after_the_tool_result_it_answers_from_it(simulator_url: str) -> None:
    offered = tools("test_math")
    question = [user("what is 12 times 7?")]
    first = await complete(simulator_url, question, AGENT, tools=offered)
    [call] = first.choices[0].message.tool_calls
    conversation = [
        *question,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"result": 84})},
    ]
    answer = await complete(simulator_url, conversation, AGENT, tools=offered)
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == "The result of multiply is 84."
    # A failed call is reported as such, never called again.
    failed = [*conversation[:2], {**conversation[2], "content": json.dumps({"error": "division by zero"})}]
    answer = await complete(simulator_url, failed, AGENT, tools=offered)
    assert answer.choices[0].message.content == "The multiply tool failed: division by zero."
    # A result with several fields: its fields, named.
    weather = {"city": "Paris", "temperature": 18, "conditions": "cloudy"}
    several = [*conversation[:2], {**conversation[2], "content": json.dumps(weather)}]
    answer = await complete(simulator_url, several, AGENT, tools=offered)
    assert answer.choices[0].message.content == (
        "multiply returned city Paris, temperature 18, conditions cloudy."
    )


async def test_without_a_matching_tool_it_answers_in_text(simulator_url: str) -> None:
    alone = await complete(simulator_url, [user("hello there")], AGENT)
    message = alone.choices[0].message
    assert alone.choices[0].finish_reason == "stop" and not message.tool_calls
    assert message.content.startswith("Hello! I'm the Everloop simulator")
    assert "no tools" in message.content
    unrelated = await complete(simulator_url, [user("tell me a joke")], AGENT, tools=tools("test_math"))
    message = unrelated.choices[0].message
    assert not message.tool_calls
    assert message.content == (
        "You said: \"tell me a joke\". I'm a simulated model, so I can't answer that myself. "
        "I can use these tools: add, subtract, multiply, divide. Ask me something one of them does."
    )
    # tool_choice "none" is obeyed even when a tool would match.
    refused = await complete(
        simulator_url, [user("what is 2 plus 2")], AGENT, tools=tools("test_math"), tool_choice="none"
    )
    assert not refused.choices[0].message.tool_calls


async def test_the_same_request_gets_the_same_answer(simulator_url: str) -> None:
    question = [user("what is 12 times 7?")]
    first = await complete(simulator_url, question, AGENT, tools=tools("test_math"))
    second = await complete(simulator_url, question, AGENT, tools=tools("test_math"))
    assert first.choices[0].message.tool_calls == second.choices[0].message.tool_calls
    chat = [user("good morning")]
    assert (await complete(simulator_url, chat, AGENT)).choices[0].message.content == (
        await complete(simulator_url, chat, AGENT)
    ).choices[0].message.content


async def test_streaming_gives_the_same_answer(simulator_url: str) -> None:
    offered = tools("test_math")
    question = [user("what is 12 times 7?")]
    whole = await complete(simulator_url, question, AGENT, tools=offered)
    streamed = rebuild(await stream(simulator_url, question, AGENT, tools=offered))
    assert calls(streamed) == calls(whole) == [("multiply", {"a": 12, "b": 7})]
    assert streamed.choices[0].message.tool_calls[0].id == whole.choices[0].message.tool_calls[0].id
    chat = [user("hello")]
    text = (await complete(simulator_url, chat, AGENT)).choices[0].message.content
    assert rebuild(await stream(simulator_url, chat, AGENT)).choices[0].message.content == text


async def test_a_turn_of_an_agent_on_agent_mode_calls_the_tool_and_answers(loop: Loop) -> None:
    base = await loop.chat(simulator=AGENT, capabilities=["test_math"])
    frames = await loop.send(base, "what is 12 times 7?")
    assert frames[-1]["type"] == "turn.completed"
    completed = [f["data"] for f in frames if f["type"] == "tool.call_completed"]
    assert [(c["tool_name"], c["status"]) for c in completed] == [("multiply", "success")]
    messages = await loop.messages(base)
    tool_calls = [c for m in messages if m["role"] == "agent" for c in m.get("tool_calls") or ()]
    assert [(c["name"], c["arguments"]) for c in tool_calls] == [("multiply", {"a": 12, "b": 7})]
    [result] = [m["tool_results"][0] for m in messages if m["role"] == "tool_result"]
    assert result["result"] == {"result": 84}
    final = messages[-1]
    assert final["role"] == "agent" and not final.get("tool_calls")
    assert final["content"][0]["text"] == "The result of multiply is 84."
