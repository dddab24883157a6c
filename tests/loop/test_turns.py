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
    assert [m["role"] for m in messages] == ["user", "agent", "tool", "agent"]
    call = messages[1]["tool_calls"][0]
    assert (call["name"], call["arguments"]) == ("add", {"a": 2, "b": 3})
    assert messages[2]["tool_results"] == [
        {"tool_call_id": call["id"], "result": {"result": 5}, "error": None}
    ]
    assert messages[3]["content"][0]["text"] == "2 + 3 = 5"
    types = _types(await loop.stored(base))
    assert types.count("tool.call_started") == types.count("tool.call_completed") == 1
    assert types.index("act.started") < types.index("tool.call_started") < types.index("act.completed")
    assert types[-2:] == ["turn.completed", "session.idled"]
