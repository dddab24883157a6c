"""Structured output in `echo` mode: a request with `response_format: {"type": "json_schema", ...}`
gets a JSON value valid against that schema (its strings say the echo text), so a `/v2/call` with an
`output_schema` works on the simulator with no key. Best effort for what a schema can ask: types,
`required`/`properties`, `enum`/`const`, `$ref` to `$defs`/`definitions`, `anyOf`/`oneOf`/`allOf`
(the first branch), `minItems`, `minLength`, numeric bounds; `pattern` and `format` are not
honoured."""

from __future__ import annotations

from typing import Any

_DEPTH = 12


def instance(schema: Any, text: str) -> Any:
    """A value valid against `schema` (a JSON Schema), its strings saying `text`."""
    return _value(schema, schema, text, 0)


def _resolve(root: Any, ref: str) -> Any:
    node = root
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node


def _value(schema: Any, root: Any, text: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _DEPTH:
        return text
    if "$ref" in schema and isinstance(schema["$ref"], str) and schema["$ref"].startswith("#"):
        return _value(_resolve(root, schema["$ref"]), root, text, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _value(schema[key][0], root, text, depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged = {**merged, **part}
        return _value(merged, root, text, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            properties = {}
        return {name: _value(sub, root, text, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [_value(schema.get("items", {}), root, text, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        number = 0.0
        if isinstance(schema.get("minimum"), int | float):
            number = max(number, float(schema["minimum"]))
        if isinstance(schema.get("exclusiveMinimum"), int | float):
            number = max(number, float(schema["exclusiveMinimum"]) + 1)
        if isinstance(schema.get("maximum"), int | float):
            number = min(number, float(schema["maximum"]))
        return int(number) if kind == "integer" else number
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    value = text
    if len(value) < int(schema.get("minLength", 0)):
        value = value.ljust(int(schema["minLength"]), ".")
    if "maxLength" in schema:
        value = value[: int(schema["maxLength"])]
    return value
