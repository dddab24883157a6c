from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from capabilities import registry
from capabilities.base import ToolContext, ToolError

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
    unix = await _run("current_time", "get_current_time", {"format": "unix"})
    assert isinstance(unix, dict) and isinstance(unix["time"], int)
    with pytest.raises(ToolError, match="unknown time zone"):
        await _run("current_time", "get_current_time", {"timezone": "Mars/Olympus"})


async def test_weather_is_deterministic_and_validated() -> None:
    first = await _run("test_weather", "get_weather", {"location": "Paris"})
    again = await _run("test_weather", "get_weather", {"location": " paris "})
    assert isinstance(first, dict) and isinstance(again, dict)
    assert first == {**again, "location": "Paris"}
    forecast = await _run(
        "test_weather", "get_forecast", {"location": "Oslo", "days": 5, "units": "fahrenheit"}
    )
    assert isinstance(forecast, dict) and len(forecast["forecast"]) == 5
    with pytest.raises(ToolError):
        await _run("test_weather", "get_forecast", {"location": "Oslo", "days": 30})


def test_system_prompt_is_capabilities_in_order_then_the_agent() -> None:
    prompt = registry.system_prompt(["test_weather", "test_math"], "You are terse.")
    weather = registry.get("test_weather")
    math = registry.get("test_math")
    assert weather and math
    assert prompt == f"{weather.system_prompt}\n\n{math.system_prompt}\n\nYou are terse."
    assert registry.system_prompt([], "Only me.") == "Only me."
