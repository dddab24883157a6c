"""The built-in capabilities' tools through whole turns: a scripted tool call from the simulator,
the handler run by the worker, the result stored as a tool message and a `tool.call_completed`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tests.loop.conftest import Loop


async def results(loop: Loop, base: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(tool name, arguments, stored result) of every call of the session, in call order."""
    messages = await loop.messages(base)
    stored = {
        m["tool_results"][0]["tool_call_id"]: m["tool_results"][0]
        for m in messages
        if m["role"] == "tool_result"
    }
    calls = [c for m in messages if m["role"] == "agent" for c in (m.get("tool_calls") or [])]
    assert set(stored) == {c["id"] for c in calls}
    return [(c["name"], c["arguments"], stored[c["id"]]) for c in calls]


async def completed_events(loop: Loop, base: str) -> dict[str, dict[str, Any]]:
    return {
        e.data["tool_call_id"]: e.data for e in await loop.stored(base) if e.type == "tool.call_completed"
    }


async def test_current_time(loop: Loop) -> None:
    script = [
        {
            "tool_calls": [
                {"name": "get_current_time", "arguments": {"timezone": "Asia/Tokyo", "format": "iso8601"}},
                {"name": "get_current_time", "arguments": {"timezone": "UTC", "format": "unix"}},
                {"name": "get_current_time", "arguments": {"timezone": "Mars/Olympus"}},
            ]
        },
        "It is late in Tokyo.",
    ]
    base = await loop.chat(simulator={"mode": "script", "script": script}, capabilities=["current_time"])
    before = datetime.now().timestamp()
    await loop.send(base, "what time is it?")
    (_, _, tokyo), (_, _, unix), (_, _, mars) = await results(loop, base)
    parsed = datetime.fromisoformat(tokyo["result"]["time"])
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 9 * 3600  # type: ignore[union-attr]
    assert abs(parsed.timestamp() - before) < 60
    assert tokyo["error"] is None and tokyo["result"]["format"] == "iso8601"
    assert abs(unix["result"]["time"] - before) < 60
    assert mars["result"] is None and "unknown time zone 'Mars/Olympus'" in mars["error"]
    events = await completed_events(loop, base)
    assert sorted(e["status"] for e in events.values()) == ["error", "success", "success"]


async def test_weather_and_math(loop: Loop) -> None:
    script = [
        {
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Lisbon"}},
                {"name": "get_forecast", "arguments": {"city": "Lisbon", "days": 2}},
                {"name": "get_forecast", "arguments": {"city": "Lisbon", "days": 0}},
                {"name": "divide", "arguments": {"a": 1, "b": 0}},
                {"name": "subtract", "arguments": {"a": 10, "b": 4.5}},
            ]
        },
        "Done.",
    ]
    base = await loop.chat(
        simulator={"mode": "script", "script": script}, capabilities=["test_weather", "test_math"]
    )
    await loop.send(base, "weather and sums")
    weather, forecast, bad_days, divide, subtract = [r for _, _, r in await results(loop, base)]
    assert weather["result"]["city"] == "Lisbon" and weather["result"]["units"] == "celsius"
    assert [d["day"] for d in forecast["result"]["forecast"]] == [1, 2]
    assert "invalid arguments for get_forecast" in bad_days["error"]
    assert "division by zero" in divide["error"]
    assert subtract["result"] == {"result": 5.5}
    # Deterministic per city: a second session asking the same gets the same weather.
    again = await loop.chat(
        simulator={"mode": "script", "script": [script[0], "Done."]},
        capabilities=["test_weather", "test_math"],
    )
    await loop.send(again, "once more")
    assert (await results(loop, again))[0][2]["result"] == weather["result"]


async def test_todo_list_is_visible_in_the_session(loop: Loop) -> None:
    first = [
        {"content": "Read the issue", "activeForm": "Reading the issue", "status": "in_progress"},
        {"content": "Write the code", "activeForm": "Writing the code", "status": "pending"},
    ]
    second = [{**first[0], "status": "completed"}, {**first[1], "status": "in_progress"}]
    script = [
        {"tool_calls": [{"name": "write_todos", "arguments": {"todos": first}}]},
        {"tool_calls": [{"name": "write_todos", "arguments": {"todos": second}}]},
        {"tool_calls": [{"name": "write_todos", "arguments": {"todos": [{**first[0], "status": "done"}]}}]},
        "Working on it.",
    ]
    base = await loop.chat(
        simulator={"mode": "script", "script": script}, capabilities=["stateless_todo_list"]
    )
    assert (await loop.client.get(f"{base}/todos")).json() == {
        "todos": [],
        "updated_at": None,
        "message_id": None,
    }
    frames = await loop.send(base, "plan it")
    live = [f for f in frames if f["type"] == "tool.call_completed"]
    assert [f["data"]["status"] for f in live] == ["success", "success", "error"]
    # The live result is text parts holding its JSON, as Everruns sends it (issue 12).
    assert json.loads(live[1]["data"]["result"][0]["text"])["todos"] == second
    todos = (await loop.client.get(f"{base}/todos")).json()
    assert todos["todos"] == second  # the invalid third call changed nothing
    messages = await loop.messages(base)
    assert todos["message_id"] == [m["id"] for m in messages if m["role"] == "tool_result"][1]
    # Owner-checked like the session itself: another agent's path is a 404.
    other = await loop.chat(capabilities=["stateless_todo_list"])
    wrong = f"{other.rsplit('/sessions/', 1)[0]}/sessions/{base.rsplit('/', 1)[1]}/todos"
    assert (await loop.client.get(wrong)).status_code == 404
