"""Whole turns through HTTP, Temporal, the worker and the simulator over litellm."""

from __future__ import annotations

from typing import Any

from tests.loop.conftest import Loop


def _types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


async def test_a_plain_reply_streams_and_is_stored(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "fixed", "text": "Hello there, how can I help?"})
    frames = await loop.send(base, "hi")
    deltas = [f["data"]["delta"] for f in frames if f["type"] == "output.message.delta"]
    assert len(deltas) > 1 and "".join(deltas) == "Hello there, how can I help?"
    stored = await loop.stored(base)
    assert _types(stored) == [
        "message.user",
        "session.activated",
        "turn.started",
        "input.received",
        "reason.started",
        "llm.generation",
        "message.agent",
        "output.message.completed",  # issue 12: the reply as Everruns' clients read it
        "reason.completed",
        "turn.completed",
        "session.idled",
    ]
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))
    messages = await loop.messages(base)
    assert [m["role"] for m in messages] == ["user", "agent"]
    assert messages[1]["content"] == [{"type": "text", "text": "Hello there, how can I help?"}]
    agent_event = next(e for e in stored if e.type == "message.agent")
    assert agent_event.data["message"]["id"] == messages[1]["id"]
    assert agent_event.data["usage"]["output_tokens"] > 0
    session = (await loop.client.get(base)).json()
    assert session["status"] == "idle"
    assert session["usage"]["output_tokens"] == agent_event.data["usage"]["output_tokens"]


async def test_one_tool_call(loop: Loop) -> None:
    script = [
        {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
        "2 + 3 = 5",
    ]
    base = await loop.chat(simulator={"mode": "script", "script": script}, capabilities=["test_math"])
    await loop.send(base, "what is 2+3?")
    messages = await loop.messages(base)
    assert [m["role"] for m in messages] == ["user", "agent", "tool_result", "agent"]
    call = messages[1]["tool_calls"][0]
    assert (call["name"], call["arguments"]) == ("add", {"a": 2, "b": 3})
    assert messages[2]["tool_results"] == [
        {"tool_call_id": call["id"], "result": {"result": 5}, "error": None}
    ]
    # The content as Everruns sends it (issue 12): the result's JSON as text, in the part and in
    # `tool.call_completed`; `tool_results` above keeps the result itself.
    text = [{"type": "text", "text": '{"result": 5}'}]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_call_id": call["id"], "result": text, "error": None}
    ]
    completed = next(e for e in await loop.stored(base) if e.type == "tool.call_completed")
    assert completed.data["result"] == text
    assert messages[3]["content"][0]["text"] == "2 + 3 = 5"
    types = _types(await loop.stored(base))
    assert types.count("tool.call_started") == types.count("tool.call_completed") == 1
    assert types.index("act.started") < types.index("tool.call_started") < types.index("act.completed")
    assert types[-2:] == ["turn.completed", "session.idled"]


async def test_parallel_tool_calls(loop: Loop) -> None:
    script = [
        {
            "tool_calls": [
                {"name": "add", "arguments": {"a": 1, "b": 2}},
                {"name": "multiply", "arguments": {"a": 3, "b": 4}},
                {"name": "get_weather", "arguments": {"city": "Oslo"}},
            ]
        },
        "done",
    ]
    base = await loop.chat(
        simulator={"mode": "script", "script": script}, capabilities=["test_math", "test_weather"]
    )
    await loop.send(base, "go")
    messages = await loop.messages(base)
    assert [m["role"] for m in messages] == [
        "user",
        "agent",
        "tool_result",
        "tool_result",
        "tool_result",
        "agent",
    ]
    calls = {c["id"]: c["name"] for c in messages[1]["tool_calls"]}
    results = {m["tool_results"][0]["tool_call_id"]: m["tool_results"][0] for m in messages[2:5]}
    assert set(results) == set(calls)
    by_name = {calls[i]: r for i, r in results.items()}
    assert by_name["add"]["result"] == {"result": 3}
    assert by_name["multiply"]["result"] == {"result": 12}
    assert by_name["get_weather"]["result"]["city"] == "Oslo"
    stored = await loop.stored(base)
    act = next(e for e in stored if e.type == "act.completed")
    assert act.data == {"completed": True, "success_count": 3, "error_count": 0}
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))


async def test_a_tool_error_is_a_result_and_the_loop_goes_on(loop: Loop) -> None:
    script = [
        {
            "tool_calls": [
                {"name": "divide", "arguments": {"a": 1, "b": 0}},
                {"name": "teleport", "arguments": {}},
                {"name": "add", "arguments": {"a": "x"}},
            ]
        },
        "I could not divide by zero.",
    ]
    base = await loop.chat(simulator={"mode": "script", "script": script}, capabilities=["test_math"])
    await loop.send(base, "1/0?")
    messages = await loop.messages(base)
    errors = sorted(m["tool_results"][0]["error"] for m in messages if m["role"] == "tool_result")
    assert len(errors) == 3
    assert "division by zero" in errors[0]
    assert any("invalid arguments for add" in e for e in errors)
    assert any("unknown tool 'teleport'" in e for e in errors)
    assert messages[-1]["content"][0]["text"] == "I could not divide by zero."
    stored = await loop.stored(base)
    completed = [e for e in stored if e.type == "tool.call_completed"]
    assert {e.data["status"] for e in completed} == {"error"}
    assert next(e for e in stored if e.type == "act.completed").data["error_count"] == 3
    assert stored[-2].type == "turn.completed"


async def test_a_429_is_retried_and_the_client_is_told_to_reset(loop: Loop) -> None:
    base = await loop.chat(
        simulator={"mode": "fixed", "text": "after retry", "error": {"status": 429, "times": 1}}
    )
    frames = await loop.send(base, "hi")
    resets = [f for f in frames if f["type"] == "output.message.reset"]
    assert len(resets) == 1 and resets[0]["data"]["attempt"] == 2
    messages = await loop.messages(base)
    assert messages[-1]["content"][0]["text"] == "after retry"
    types = [e.type for e in await loop.stored(base)]
    assert types.count("message.agent") == 1
    assert "turn.completed" in types


async def test_a_401_fails_the_turn_cleanly_without_secrets(loop: Loop) -> None:
    provider = await loop.client.post(
        "/v1/llm-providers",
        json={
            "name": "Bad key",
            "provider_type": "simulator",
            "base_url": loop.simulator_url,
            "api_key": "sk-super-secret-value",
        },
    )
    model = await loop.client.post(
        f"/v1/llm-providers/{provider.json()['id']}/models",
        json={"model_id": "m", "settings": {"error": {"status": 401}}},
    )
    agent = await loop.client.post("/v1/agents", json={"name": "a", "default_model_id": model.json()["id"]})
    session = await loop.client.post(f"/v1/agents/{agent.json()['id']}/sessions", json={})
    base = f"/v1/agents/{agent.json()['id']}/sessions/{session.json()['id']}"
    await loop.send(base, "hi")
    stored = await loop.stored(base)
    failed = next(e for e in stored if e.type == "turn.failed")
    assert failed.data["error_code"] == "llm_error"
    assert "401" in failed.data["error"]
    notice = (await loop.messages(base))[-1]
    assert notice["role"] == "agent"
    assert "could not answer" in notice["content"][0]["text"]
    everything = repr([(e.type, e.data) for e in stored]) + repr(await loop.messages(base))
    assert "sk-super-secret-value" not in everything
    assert (await loop.client.get(base)).json()["status"] == "idle"
    # Not retried: one attempt only.
    assert [e.type for e in stored].count("reason.started") == 1


async def test_max_iterations_ends_the_turn(loop: Loop) -> None:
    call = {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 1}}]}
    base = await loop.chat(
        simulator={"mode": "script", "script": [call] * 5}, capabilities=["test_math"], max_iterations=2
    )
    await loop.send(base, "loop forever")
    stored = await loop.stored(base)
    failed = next(e for e in stored if e.type == "turn.failed")
    assert failed.data["error_code"] == "max_iterations"
    types = _types(stored)
    assert types.count("reason.started") == 2
    # The second act's completion, with no step after it, is stored by the turn's end.
    assert types.count("act.completed") == 2
    assert types[-3:] == ["act.completed", "turn.failed", "session.idled"]
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))


async def test_a_message_posted_during_a_turn_runs_after_it(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "echo", "first_token_delay": 0.5})
    await loop.send(base, "first", wait=False)
    await loop.send(base, "second")
    messages = await loop.messages(base)
    assert [(m["role"], m["content"][0]["text"]) for m in messages] == [
        ("user", "first"),
        ("user", "second"),
        ("agent", "Echo: first"),
        ("agent", "Echo: second"),
    ]
    stored = await loop.stored(base)
    turns = [e for e in stored if e.type == "turn.started"]
    assert [t.data["input_message_id"] for t in turns] == [messages[0]["id"], messages[1]["id"]]
    # The second turn started after the first ended, and saw the whole conversation.
    first_end = next(e.sequence for e in stored if e.type == "turn.completed")
    assert turns[1].sequence > first_end
    second_generation = [e for e in stored if e.type == "llm.generation"][1]
    # In turn order: the first exchange, then the second message (not stored order).
    history = second_generation.data["messages"]
    assert [(m["role"], m["message_id"]) for m in history] == [
        ("user", messages[0]["id"]),
        ("agent", messages[2]["id"]),
        ("user", messages[1]["id"]),
    ]
