"""A task list the model rewrites whole with each call. Nothing is stored besides the tool result
itself: the session's latest successful `write_todos` result is its list
(`GET /v1/agents/{a}/sessions/{s}/todos`, and live in the `tool.call_completed` event)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from capabilities.base import CapabilitySpec, Tool, ToolContext
from core.schemas.capabilities import Todo

TOOL_NAME = "write_todos"


class WriteTodos(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    todos: Annotated[
        list[Todo], msgspec.Meta(max_length=100, description="The whole list; it replaces the previous one")
    ]


async def write_todos(args: WriteTodos, ctx: ToolContext) -> dict[str, Any]:
    counts = {status: 0 for status in ("pending", "in_progress", "completed")}
    for todo in args.todos:
        counts[todo.status] += 1
    return {"todos": msgspec.to_builtins(args.todos), "counts": counts}


CAPABILITY = CapabilitySpec(
    id="stateless_todo_list",
    name="Todo List",
    description="A task list the agent keeps up to date while it works through a multi-step task",
    icon="list-checks",
    category="Productivity",
    system_prompt=(
        "For a task with several steps, keep a todo list with the write_todos tool: send the whole "
        "list each time, mark one item in_progress before you start it and completed as soon as it "
        "is done."
    ),
    tools=(
        Tool(
            name=TOOL_NAME,
            description="Replace the session's todo list (each item: content, activeForm, status).",
            params=WriteTodos,
            handler=write_todos,
        ),
    ),
    local=True,
    timeout_s=2.0,  # within core.durability.LOCAL_TOOL_LIMIT: a hung call is a timeout result
)
