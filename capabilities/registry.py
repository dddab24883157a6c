"""Every built-in capability, by id, in a stable order."""

from __future__ import annotations

from capabilities import current_time, test_math, test_weather
from capabilities.base import CapabilitySpec

_ALL: tuple[CapabilitySpec, ...] = (current_time.CAPABILITY, test_math.CAPABILITY, test_weather.CAPABILITY)
CAPABILITIES: dict[str, CapabilitySpec] = {c.id: c for c in _ALL}


def get(capability_id: str) -> CapabilitySpec | None:
    return CAPABILITIES.get(capability_id)


def all_capabilities() -> list[CapabilitySpec]:
    return list(_ALL)


def unknown(ids: list[str]) -> list[str]:
    return [i for i in ids if i not in CAPABILITIES]


def system_prompt(capability_ids: list[str], agent_prompt: str) -> str:
    """The capabilities' prompt additions in the agent's order, then the agent's own prompt."""
    parts = [c.system_prompt for i in capability_ids if (c := CAPABILITIES.get(i)) and c.system_prompt]
    if agent_prompt:
        parts.append(agent_prompt)
    return "\n\n".join(parts)
