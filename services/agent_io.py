"""Agents as files: Markdown with YAML front matter (the prompt is the body), YAML or JSON.

Export writes Markdown; import reads any of the three, and export-then-import gives an equal agent.
"""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from core.db.models import Agent
from core.errors import InvalidInput, field_in
from core.json_limits import JsonLimits, check_json, check_yaml
from core.schemas.agents import CreateAgent

FRONT_MATTER = "---\n"


def export_markdown(agent: Agent) -> str:
    meta: dict[str, Any] = {"name": agent.name}
    if agent.display_name is not None:
        meta["display_name"] = agent.display_name
    meta |= {
        "description": agent.description,
        "tags": list(agent.tags),
        # A configured capability as {ref, config} (Everruns' agent-file form), the others as their
        # id: what import accepts.
        "capabilities": [
            {"ref": c, "config": agent.capability_configs[c]} if agent.capability_configs.get(c) else c
            for c in agent.capabilities
        ],
        "default_model_id": str(agent.default_model_id) if agent.default_model_id else None,
        "max_iterations": agent.max_iterations,
    }
    # The client-side fields only when set, so an agent without them exports as before.
    if agent.tools:
        meta["tools"] = list(agent.tools)
    if agent.initial_files:
        meta["initial_files"] = list(agent.initial_files)
    if agent.parallel_tool_calls is not None:
        meta["parallel_tool_calls"] = agent.parallel_tool_calls
    header = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1_000_000)
    # The body is the system prompt byte for byte, so it round-trips exactly.
    return f"{FRONT_MATTER}{header}{FRONT_MATTER}{agent.system_prompt}"


def _split_front_matter(text: str) -> tuple[str, str]:
    rest = text[len(FRONT_MATTER) :]
    end = rest.find(f"\n{FRONT_MATTER}")
    if end == -1:
        if rest.endswith("\n---"):
            return rest[: -len("\n---")], ""
        raise InvalidInput("Markdown front matter is not closed by a '---' line", field="body")
    return rest[:end], rest[end + 1 + len(FRONT_MATTER) :]


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a mapping of agent fields", field="body")
    return value


def parse_agent(text: str, content_type: str | None, limits: JsonLimits) -> CreateAgent:
    """Reads an agent file; the format comes from the content type, else from the text itself.
    Nesting, size and (in YAML) alias expansion are checked against `limits` before it is loaded."""
    kind = (content_type or "").split(";")[0].strip().lower()
    stripped = text.lstrip("\ufeff")
    what = "the agent file"
    try:
        if kind in ("text/markdown", "text/x-markdown") or stripped.startswith(FRONT_MATTER):
            header, body = _split_front_matter(stripped)
            check_yaml(header, limits, what)
            fields = _mapping(yaml.safe_load(header) or {}, "the front matter")
            if "system_prompt" in fields and body.strip():
                raise InvalidInput(
                    "give the system prompt in the body or the front matter, not both", field="body"
                )
            fields.setdefault("system_prompt", body)
        elif kind == "application/json" or stripped.lstrip().startswith("{"):
            check_json(stripped.encode(), limits, what)
            fields = _mapping(msgspec.json.decode(stripped), "the JSON document")
        else:
            check_yaml(stripped, limits, what)
            fields = _mapping(yaml.safe_load(stripped), "the YAML document")
    except (yaml.YAMLError, msgspec.DecodeError) as exc:
        raise InvalidInput(f"the agent file does not parse: {exc}", field="body") from None
    for key in ("id", "status", "created_at", "updated_at"):
        fields.pop(key, None)  # what an export of another instance may carry; not importable
    if fields.get("description") is None:
        fields.pop("description", None)
    try:
        return msgspec.convert(fields, CreateAgent)
    except msgspec.ValidationError as exc:
        field = field_in(str(exc))
        raise InvalidInput(
            f"invalid agent file: {exc}", field=field.split("[")[0] if field else None
        ) from None
