"""Message content parts, tagged by `type` on the wire; and a tool result's text, the one form
clients, the model and the stored rows share."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec


class TextPart(msgspec.Struct, tag="text", tag_field="type", kw_only=True, forbid_unknown_fields=True):
    text: str


class ImagePart(msgspec.Struct, tag="image", tag_field="type", kw_only=True, forbid_unknown_fields=True):
    """An image by `url`, or inline as `base64` with its `media_type`."""

    url: str | None = None
    base64: str | None = None
    media_type: str | None = None


class ToolCallPart(
    msgspec.Struct, tag="tool_call", tag_field="type", kw_only=True, forbid_unknown_fields=True
):
    id: str
    name: str
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)


class ToolResultPart(
    msgspec.Struct, tag="tool_result", tag_field="type", kw_only=True, forbid_unknown_fields=True
):
    """A tool's answer to call `tool_call_id` in a tool message, as Everruns sends it: `result`
    holds text parts with the result's JSON, null when the call failed (`error` says why)."""

    tool_call_id: str
    # Any JSON in the schema, as Everruns types it: a client may send any value here.
    result: Annotated[
        Any,
        msgspec.Meta(
            description="The result as text parts: one `{type: text, text}` holding the result's "
            "JSON text (`JSON.parse` it). Null when the call failed: then `error` says why."
        ),
    ] = None
    error: str | None = None


ContentPart = TextPart | ImagePart | ToolCallPart | ToolResultPart


class ToolCall(msgspec.Struct, kw_only=True):
    id: str
    name: str
    arguments: dict[str, Any]


class ToolResult(msgspec.Struct, kw_only=True):
    tool_call_id: str
    result: Any
    error: str | None


def content_from_json(raw: list[dict[str, Any]]) -> list[ContentPart]:
    return msgspec.convert(raw, list[ContentPart])


def content_to_json(parts: list[ContentPart]) -> list[dict[str, Any]]:
    return msgspec.to_builtins(parts)  # type: ignore[no-any-return]


# A tool result's text. Everruns sends a result as text parts holding its JSON, in the
# `tool.call_completed` event and in the tool message's `tool_result` part; the model reads the same
# JSON text as the tool message's content. The text is written once, when the result is stored
# (`tool_result_part`), so the event, the message and the model never disagree, and what is stored
# is text: a NUL or any other character PostgreSQL's jsonb refuses inside a string is escaped in it.


def json_value(value: Any) -> Any:
    """A tool's return value as plain JSON data, as it is stored and passed on: msgspec's encoding
    (bytes as base64 text, dates in ISO form, sets and tuples as lists, NaN and infinities as null),
    and a string's lone surrogates (text decoded from invalid UTF-8) as U+FFFD. A TypeError for a
    value JSON cannot hold."""
    try:
        return msgspec.json.decode(msgspec.json.encode(value))
    except UnicodeEncodeError:
        return msgspec.json.decode(msgspec.json.encode(_valid_text(value)))


def _valid_text(value: Any) -> Any:
    if isinstance(value, str):
        # A surrogate pair split over two code points joins; a lone one becomes U+FFFD.
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_valid_text(k): _valid_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_valid_text(v) for v in value]
    return value


def result_json(value: Any) -> str:
    """A result's JSON text (of a `json_value`): json.dumps' defaults (ASCII, `\\u` escapes, `", "` and
    `": "`), exactly the text the model has always read for a result."""
    return json.dumps(value)


def tool_result_part(tool_call_id: str, result: Any, error: str | None) -> ToolResultPart:
    """A tool message's part for a result (a `json_value`): one text part holding its JSON text; for
    a call that failed, no result, and its error."""
    if error is not None:
        return ToolResultPart(tool_call_id=tool_call_id, result=None, error=error)
    return ToolResultPart(tool_call_id=tool_call_id, result=[TextPart(text=result_json(result))])


def result_parts(part: ToolResultPart) -> list[TextPart] | None:
    """The text parts of a part's result; None when it has none (a failed call, or a row a
    worker of the previous release wrote during an upgrade: see `model_text`)."""
    result = part.result
    if not isinstance(result, list) or not result:
        return None
    parts = []
    for item in result:
        if isinstance(item, TextPart):
            parts.append(item)
        elif isinstance(item, dict) and item.keys() == {"type", "text"} and item["type"] == "text":
            if not isinstance(item["text"], str):
                return None
            parts.append(TextPart(text=item["text"]))
        else:
            return None
    return parts


def model_text(part: ToolResultPart) -> str:
    """What the model reads for a result (the content of its `role: tool` message): the JSON text
    the part holds, or `{"error": ...}` for a failed call."""
    if part.error:
        return json.dumps({"error": part.error})
    parts = result_parts(part)
    if parts is None:
        # Migration 0012 rewrote every stored result as text; a worker of the previous release may
        # still write the old form (the result itself) while an upgrade rolls out: read it as it
        # was read then.
        return result_json(part.result)
    return "".join(p.text for p in parts)


def result_value(part: ToolResultPart) -> Any:
    """A part's result as data (the `tool_results` convenience array of messages, the todo list):
    its JSON text decoded; null for a failed call."""
    parts = result_parts(part)
    if parts is None:
        return part.result  # null, or the old form (see `model_text`)
    text = "".join(p.text for p in parts)
    try:
        return json.loads(text)
    except ValueError:  # a text that is not JSON (not one Everloop wrote): the text itself
        return text
