"""Arithmetic tools for exercising the loop in tests and demos."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from capabilities.base import CapabilitySpec, Tool, ToolContext, ToolError


class Operands(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    a: float
    b: float


def _result(value: float) -> dict[str, Any]:
    if not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    return {"result": int(value) if value.is_integer() else value}


async def add(args: Operands, ctx: ToolContext) -> dict[str, Any]:
    return _result(args.a + args.b)


async def subtract(args: Operands, ctx: ToolContext) -> dict[str, Any]:
    return _result(args.a - args.b)


async def multiply(args: Operands, ctx: ToolContext) -> dict[str, Any]:
    return _result(args.a * args.b)


async def divide(args: Operands, ctx: ToolContext) -> dict[str, Any]:
    if args.b == 0:
        raise ToolError("division by zero")
    return _result(args.a / args.b)


def _tool(name: str, verb: str, handler: Any) -> Tool:
    return Tool(name=name, description=f"{verb} two numbers: a and b.", params=Operands, handler=handler)


CAPABILITY = CapabilitySpec(
    id="test_math",
    name="Test Math",
    description="Arithmetic tools (add, subtract, multiply, divide) for testing the agentic loop",
    icon="calculator",
    category="Testing",
    system_prompt="For arithmetic, use the add, subtract, multiply and divide tools instead of guessing.",
    tools=(
        _tool("add", "Add", add),
        _tool("subtract", "Subtract b from a:", subtract),
        _tool("multiply", "Multiply", multiply),
        _tool("divide", "Divide a by b:", divide),
    ),
    local=True,
    timeout_s=2.0,  # within core.durability.LOCAL_TOOL_LIMIT: a hung call is a timeout result
)
