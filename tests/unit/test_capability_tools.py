from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from activities.llm import _AgentTools
from capabilities import registry
from capabilities.base import ToolContext, ToolError
from core.durability import LOCAL_TOOL_LIMIT
from core.schemas.content import ToolCallPart

CTX = ToolContext(session_id=uuid.uuid4(), agent_id=uuid.uuid4())


async def _run(capability: str, tool: str, arguments: dict[str, object]) -> object:
    spec = registry.get(capability)
    assert spec is not None
    [found] = [t for t in spec.tools if t.name == tool]
    return await found.handler(found.parse(arguments), CTX)


@pytest.mark.parametrize(
    ("tool", "a", "b", "expected"),
    [("add", 2, 3, 5), ("subtract", 2, 3, -1), ("multiply", 2.5, 4, 10), ("divide", 7, 2, 3.5)],
)
async def test_math(tool: str, a: float, b: float, expected: float) -> None:
    assert await _run("test_math", tool, {"a": a, "b": b}) == {"result": expected}


async def test_math_errors_are_tool_errors() -> None:
    with pytest.raises(ToolError, match="division by zero"):
        await _run("test_math", "divide", {"a": 1, "b": 0})
    with pytest.raises(ToolError, match="invalid arguments for add"):
        await _run("test_math", "add", {"a": "one", "b": 2})
    with pytest.raises(ToolError, match="not a finite number"):
        await _run("test_math", "multiply", {"a": 1e308, "b": 1e308})


async def test_current_time_formats_and_zones() -> None:
    iso = await _run("current_time", "get_current_time", {"timezone": "Asia/Tokyo"})
    assert isinstance(iso, dict)
    parsed = datetime.fromisoformat(str(iso["time"]))
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 9 * 3600  # type: ignore[union-attr]
    assert iso["format"] == "iso8601"
    unix = await _run("current_time", "get_current_time", {"format": "unix"})
    assert isinstance(unix, dict) and isinstance(unix["time"], int)
    human = await _run("current_time", "get_current_time", {"format": "human", "timezone": "Europe/Paris"})
    assert isinstance(human, dict) and str(human["time"]).split()[-1] in ("CET", "CEST")
    with pytest.raises(ToolError, match="invalid arguments"):
        await _run("current_time", "get_current_time", {"format": "iso"})
    with pytest.raises(ToolError, match="unknown time zone"):
        await _run("current_time", "get_current_time", {"timezone": "Mars/Olympus"})


async def test_weather_is_deterministic_and_validated() -> None:
    first = await _run("test_weather", "get_weather", {"city": "Paris"})
    again = await _run("test_weather", "get_weather", {"city": " paris "})
    assert isinstance(first, dict) and isinstance(again, dict)
    assert first == {**again, "city": "Paris"}
    other = [await _run("test_weather", "get_weather", {"city": c}) for c in ("Oslo", "Lima", "Cairo")]
    assert (
        len(
            {(o["temperature"], o["conditions"]) for o in other if isinstance(o, dict)}
            | {(first["temperature"], first["conditions"])}
        )
        > 1
    )  # deterministic per city, not one answer for all
    forecast = await _run("test_weather", "get_forecast", {"city": "Oslo", "days": 5, "units": "fahrenheit"})
    assert isinstance(forecast, dict) and len(forecast["forecast"]) == 5
    assert forecast == await _run(
        "test_weather", "get_forecast", {"city": "Oslo", "days": 5, "units": "fahrenheit"}
    )
    with pytest.raises(ToolError):
        await _run("test_weather", "get_forecast", {"city": "Oslo", "days": 30})
    with pytest.raises(ToolError, match="invalid arguments for get_weather"):
        await _run("test_weather", "get_weather", {"location": "Oslo"})


async def test_write_todos_echoes_the_list_and_validates_it() -> None:
    todo = {"content": "Run the tests", "activeForm": "Running the tests", "status": "in_progress"}
    result = await _run(
        "stateless_todo_list", "write_todos", {"todos": [todo, {**todo, "status": "pending"}]}
    )
    assert result == {
        "todos": [todo, {**todo, "status": "pending"}],
        "counts": {"pending": 1, "in_progress": 1, "completed": 0},
    }
    with pytest.raises(ToolError, match="invalid arguments for write_todos"):
        await _run("stateless_todo_list", "write_todos", {"todos": [{**todo, "status": "done"}]})
    with pytest.raises(ToolError, match="activeForm"):
        await _run("stateless_todo_list", "write_todos", {"todos": [{"content": "x", "status": "pending"}]})


def test_system_prompt_is_capabilities_in_order_then_the_agent() -> None:
    prompt = registry.system_prompt(["test_weather", "test_math"], "You are terse.")
    weather = registry.get("test_weather")
    math = registry.get("test_math")
    assert weather and math
    assert prompt == f"{weather.system_prompt}\n\n{math.system_prompt}\n\nYou are terse."
    assert registry.system_prompt([], "Only me.") == "Only me."


def test_local_capabilities_time_out_within_the_local_limit() -> None:
    # A hung call of a short tool must end as a "timeout" result inside its local attempt, not as
    # the attempt's own timeout (which moves the call to a regular activity and runs it again).
    local = [c for c in registry.CAPABILITIES.values() if c.local]
    assert {c.id for c in local} == {"current_time", "test_math", "test_weather", "stateless_todo_list"}
    for capability in local:
        assert capability.timeout_s < LOCAL_TOOL_LIMIT.total_seconds(), capability.id


@pytest.mark.parametrize("local_tools", [True, False])
def test_a_short_tools_call_is_local_unless_local_tool_activities_is_off(local_tools: bool) -> None:
    agent_tools = _AgentTools(["test_math", "web_fetch"], {}, None, {}, 60.0, local_tools)
    add = agent_tools.ref(ToolCallPart(id="c1", name="add", arguments={"a": 1, "b": 2}))
    fetch = agent_tools.ref(ToolCallPart(id="c2", name="web_fetch", arguments={"url": "https://x.org"}))
    assert (add.local, fetch.local) == (local_tools, False)
