"""Made-up but deterministic weather, for exercising tool calls without a network."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

import msgspec

from capabilities.base import CapabilitySpec, Tool, ToolContext

CONDITIONS = ("sunny", "partly cloudy", "cloudy", "light rain", "rain", "windy", "snow")
City = Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="City name, e.g. Paris")]
Units = Literal["celsius", "fahrenheit"]


class GetWeather(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    city: City
    units: Units = "celsius"


class GetForecast(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    city: City
    days: Annotated[int, msgspec.Meta(ge=1, le=7)] = 3
    units: Units = "celsius"


def _day(city: str, day: int, units: Units) -> dict[str, Any]:
    digest = hashlib.sha256(f"{city.strip().lower()}:{day}".encode()).digest()
    celsius = digest[0] % 35 - 5
    temperature = celsius if units == "celsius" else round(celsius * 9 / 5 + 32)
    return {"temperature": temperature, "units": units, "conditions": CONDITIONS[digest[1] % len(CONDITIONS)]}


async def get_weather(args: GetWeather, ctx: ToolContext) -> dict[str, Any]:
    return {"city": args.city, **_day(args.city, 0, args.units)}


async def get_forecast(args: GetForecast, ctx: ToolContext) -> dict[str, Any]:
    days = [{"day": d, **_day(args.city, d, args.units)} for d in range(1, args.days + 1)]
    return {"city": args.city, "forecast": days}


CAPABILITY = CapabilitySpec(
    id="test_weather",
    name="Test Weather",
    description="Simulated weather tools (get_weather, get_forecast) for testing the agentic loop",
    icon="cloud-sun",
    category="Testing",
    system_prompt="Use get_weather and get_forecast for weather questions.",
    tools=(
        Tool(
            name="get_weather",
            description="Current weather in a city.",
            params=GetWeather,
            handler=get_weather,
        ),
        Tool(
            name="get_forecast",
            description="Daily forecast for the next 1 to 7 days in a city.",
            params=GetForecast,
            handler=get_forecast,
        ),
    ),
    local=True,
    timeout_s=2.0,  # within core.durability.LOCAL_TOOL_LIMIT: a hung call is a timeout result
)
