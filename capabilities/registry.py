"""Every built-in capability, by id, in a stable order; and what an agent's enabled set offers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from capabilities import (
    current_time,
    knowledge_search,
    research,
    session_file_system,
    stateless_todo_list,
    test_math,
    test_weather,
    web_fetch,
)
from capabilities.base import CapabilitySpec, Tool

_ALL: tuple[CapabilitySpec, ...] = (
    current_time.CAPABILITY,
    web_fetch.CAPABILITY,
    session_file_system.CAPABILITY,
    stateless_todo_list.CAPABILITY,
    test_math.CAPABILITY,
    test_weather.CAPABILITY,
    knowledge_search.CAPABILITY,
    research.CAPABILITY,
)
CAPABILITIES: dict[str, CapabilitySpec] = {c.id: c for c in _ALL}


def get(capability_id: str) -> CapabilitySpec | None:
    return CAPABILITIES.get(capability_id)


def all_capabilities() -> list[CapabilitySpec]:
    return list(CAPABILITIES.values())


# `extra`: capabilities beyond the built-ins that the caller resolved for one agent's owner (MCP
# servers, `mcp:{id}`, from services.mcp_servers.specs_for).
Extra = Mapping[str, CapabilitySpec]


def _lookup(extra: Extra | None) -> Mapping[str, CapabilitySpec]:
    return {**CAPABILITIES, **extra} if extra else CAPABILITIES


def unknown(ids: list[str], extra: Extra | None = None) -> list[str]:
    known = _lookup(extra)
    return [i for i in ids if i not in known]


def system_prompt(capability_ids: list[str], agent_prompt: str, extra: Extra | None = None) -> str:
    """The capabilities' prompt additions in the agent's order, then the agent's own prompt."""
    known = _lookup(extra)
    parts = [c.system_prompt for i in capability_ids if (c := known.get(i)) and c.system_prompt]
    if agent_prompt:
        parts.append(agent_prompt)
    return "\n\n".join(parts)


def tools_of(capability_ids: list[str], extra: Extra | None = None) -> Iterator[tuple[Tool, CapabilitySpec]]:
    """The tools the given capabilities provide, in the agent's order."""
    known = _lookup(extra)
    for capability_id in capability_ids:
        spec = known.get(capability_id)
        if spec is None:
            continue
        for tool in spec.tools:
            yield tool, spec


def find_tool(
    capability_ids: list[str], name: str, extra: Extra | None = None
) -> tuple[Tool, CapabilitySpec] | None:
    return next(((t, c) for t, c in tools_of(capability_ids, extra) if t.name == name), None)


def tool_conflicts(capability_ids: list[str], extra: Extra | None = None) -> list[str]:
    """One line per tool name that two or more of the capabilities offer (a model could not tell
    which one it calls), e.g. "get_weather (test_weather, mcp:...)"."""
    offered: dict[str, list[str]] = {}
    for tool, spec in tools_of(capability_ids, extra):
        offered.setdefault(tool.name, []).append(spec.id)
    return [f"{name} ({', '.join(ids)})" for name, ids in offered.items() if len(ids) > 1]
