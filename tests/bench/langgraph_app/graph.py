"""Everloop's one-tool benchmark turn as a LangGraph user would write it: a model node (ChatOpenAI on
the simulator's OpenAI-compatible URL, `bind_tools`) and a ToolNode, looping until the model answers.

In-process, tests/bench/langgraph_compare.py compiles it with a SQLite checkpointer (`build_graph`);
`langgraph dev` loads `graph` below (its own in-memory persistence replaces the checkpointer) with
the simulator's URL in SIMULATOR_URL. Nothing of Everloop's is imported here: `langgraph dev` runs it
in a virtualenv of its own (requirements.txt beside this file).
"""

from __future__ import annotations

import os
from typing import Any

# The bench group is not installed by `make install`, yet `make lint` runs mypy over tests/: without
# it these are Any (the `unused-ignore` keeps mypy quiet when the group is there).
from langchain_core.messages import AnyMessage, SystemMessage  # type: ignore[import-not-found,unused-ignore]
from langchain_openai import ChatOpenAI  # type: ignore[import-not-found,unused-ignore]
from langgraph.checkpoint.base import BaseCheckpointSaver  # type: ignore[import-not-found,unused-ignore]
from langgraph.graph import END, START, MessagesState, StateGraph  # type: ignore[import-not-found,unused-ignore]
from langgraph.graph.state import CompiledStateGraph  # type: ignore[import-not-found,unused-ignore]
from langgraph.prebuilt import ToolNode, tools_condition  # type: ignore[import-not-found,unused-ignore]
from pydantic import SecretStr

# The simulator's script for the turn: call `add` once, then answer "3". The same as
# tests/bench/loop_latency.py's SCRIPT (langgraph_compare.py checks), sent in the request body as
# Everloop's model settings are (`extra_body`).
SCRIPT: dict[str, Any] = {
    "mode": "script",
    "script": [{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}, "3"],
}
# Everloop's test_math capability, as the benchmark's agent has it: its system prompt and its four
# tools (capabilities/test_math.py), so both sides send the model the same request.
SYSTEM_PROMPT = "For arithmetic, use the add, subtract, multiply and divide tools instead of guessing."


def _result(value: float) -> dict[str, float]:
    return {"result": int(value) if value.is_integer() else value}


async def add(a: float, b: float) -> dict[str, float]:
    """Add two numbers: a and b."""
    return _result(a + b)


async def subtract(a: float, b: float) -> dict[str, float]:
    """Subtract b from a: two numbers: a and b."""
    return _result(a - b)


async def multiply(a: float, b: float) -> dict[str, float]:
    """Multiply two numbers: a and b."""
    return _result(a * b)


async def divide(a: float, b: float) -> dict[str, float]:
    """Divide a by b: two numbers: a and b."""
    if b == 0:
        raise ValueError("division by zero")
    return _result(a / b)


TOOLS = [add, subtract, multiply, divide]


def build_graph(
    base_url: str, checkpointer: BaseCheckpointSaver[Any] | None = None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    # Streamed, as Everloop's worker calls its models (it relays the deltas to the session's stream).
    model = ChatOpenAI(
        model="sim",
        base_url=base_url,
        api_key=SecretStr("x"),
        streaming=True,
        extra_body={"simulator": SCRIPT},
    ).bind_tools(TOOLS)

    async def call_model(state: MessagesState) -> dict[str, list[AnyMessage]]:
        reply = await model.ainvoke([SystemMessage(SYSTEM_PROMPT), *state["messages"]])
        return {"messages": [reply]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode(TOOLS))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=checkpointer)


# For `langgraph dev` (langgraph.json): the server brings its own persistence.
graph = build_graph(os.environ.get("SIMULATOR_URL", "http://127.0.0.1:8001/simulator/v1"))
