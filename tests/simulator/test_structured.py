"""The simulator's structured output (echo mode with a `json_schema` response format) and a script
counted from the conversation's start (how a `/v2/call` repair is scripted)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs are installed
import msgspec
import pytest

from api.simulator import engine, structured
from api.simulator.config import SimulatorConfig
from api.simulator.schemas import ChatCompletionRequest

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"a": {"type": "string"}, "n": {"type": "integer", "minimum": 3}}},
    {
        "type": "object",
        "properties": {
            "people": {"type": "array", "minItems": 2, "items": {"$ref": "#/$defs/person"}},
            "kind": {"enum": ["x", "y"]},
            "ok": {"type": ["boolean", "null"]},
            "short": {"type": "string", "maxLength": 3},
            "long": {"type": "string", "minLength": 40},
            "any": {"anyOf": [{"type": "number", "exclusiveMinimum": 5}, {"type": "string"}]},
        },
        "required": ["people", "kind"],
        "additionalProperties": False,
        "$defs": {"person": {"type": "object", "properties": {"name": {"type": "string"}}}},
    },
    {"type": "array", "items": {"const": 7}},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_instances_are_valid(schema: dict[str, Any]) -> None:
    jsonschema.validate(structured.instance(schema, "Echo: hi"), schema)


def _request(messages: list[dict[str, Any]], **extra: Any) -> ChatCompletionRequest:
    return msgspec.convert({"model": "m", "messages": messages, **extra}, ChatCompletionRequest)


def test_echo_answers_json_for_a_json_schema_format() -> None:
    schema = SCHEMAS[1]
    form = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": False}}
    request = _request([{"role": "user", "content": "hi"}], response_format=form)
    reply = engine.plan_reply(request, SimulatorConfig(), "c")
    assert reply.text is not None
    jsonschema.validate(json.loads(reply.text), schema)
    plain = engine.plan_reply(_request([{"role": "user", "content": "hi"}]), SimulatorConfig(), "c")
    assert plain.text == "Echo: hi"


def test_a_script_may_count_from_the_start() -> None:
    config = msgspec.convert(
        {"mode": "script", "script": ["bad", "good"], "count_from": "start"}, SimulatorConfig
    )
    repair = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "bad"},
        {"role": "user", "content": "that was invalid"},
    ]
    assert engine.plan_reply(_request(repair[:1]), config, "c").text == "bad"
    assert engine.plan_reply(_request(repair), config, "c").text == "good"
    by_turn = msgspec.convert({"mode": "script", "script": ["bad", "good"]}, SimulatorConfig)
    assert engine.plan_reply(_request(repair), by_turn, "c").text == "bad"
    with pytest.raises(msgspec.ValidationError, match="count_from"):
        msgspec.convert({"count_from": "start"}, SimulatorConfig)
