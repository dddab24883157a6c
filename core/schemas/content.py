"""Message content parts, tagged by `type` on the wire."""

from __future__ import annotations

from typing import Any

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
    tool_call_id: str
    result: Any = None
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
