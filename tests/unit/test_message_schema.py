from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from activities.tools import RESULT_MAX_CHARS, _passed_on
from core.db.models import Message
from core.schemas import events as ev
from core.schemas.content import model_text, tool_result_part
from services.conversation import to_llm_messages
from services.sessions import message_to_schema


def _message(role: str, content: list[dict[str, Any]]) -> Message:
    return Message(
        id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        sequence=3,
        role=role,
        content=content,
        controls=None,
        metadata_=None,
        tags=[],
        created_at=datetime.now(UTC),
    )


def _part(tool_call_id: str, result: Any = None, error: str | None = None) -> dict[str, Any]:
    """A tool message's part as the worker stores it."""
    built: dict[str, Any] = msgspec.to_builtins(tool_result_part(tool_call_id, result, error))
    return built


def test_agent_messages_carry_their_tool_calls() -> None:
    message = message_to_schema(
        _message(
            "agent",
            [
                {"type": "text", "text": "Let me add."},
                {"type": "tool_call", "id": "c1", "name": "add", "arguments": {"a": 1, "b": 2}},
                {"type": "tool_call", "id": "c2", "name": "multiply", "arguments": {"a": 3, "b": 4}},
            ],
        )
    )
    assert [(c.id, c.name, c.arguments) for c in message.tool_calls or []] == [
        ("c1", "add", {"a": 1, "b": 2}),
        ("c2", "multiply", {"a": 3, "b": 4}),
    ]
    assert message.tool_results is None


def test_tool_messages_carry_their_results() -> None:
    # Issue 12 changed the content: a result is text parts holding its JSON, as Everruns sends it;
    # `tool_results` keeps the result itself for v0.2 clients.
    content = [_part("c1", {"result": 3}), _part("c2", error="division by zero")]
    assert content == [
        {
            "type": "tool_result",
            "tool_call_id": "c1",
            "result": [{"type": "text", "text": '{"result": 3}'}],
            "error": None,
        },
        {"type": "tool_result", "tool_call_id": "c2", "result": None, "error": "division by zero"},
    ]
    message = message_to_schema(_message("tool_result", content))
    assert msgspec.to_builtins(message.content) == content
    assert [(r.tool_call_id, r.result, r.error) for r in message.tool_results or []] == [
        ("c1", {"result": 3}, None),
        ("c2", None, "division by zero"),
    ]
    assert message.tool_calls is None


def test_strings_and_nulls_are_json_text_too() -> None:
    # A string result is JSON-quoted (the text is always JSON: `JSON.parse` works on every one).
    text = _part("c1", "plain words")["result"]
    assert text == [{"type": "text", "text": '"plain words"'}]
    assert _part("c2", None)["result"] == [{"type": "text", "text": "null"}]  # ran, returned nothing
    message = message_to_schema(_message("tool_result", [_part("c1", "plain words"), _part("c2", None)]))
    assert [r.result for r in message.tool_results or []] == ["plain words", None]


def test_the_model_reads_the_text_clients_get() -> None:
    weather = {"city": "Oslo", "temperature": -3.5, "note": "snø"}
    rows = [
        _message("tool_result", [_part("c1", weather)]),
        _message("tool_result", [_part("c2", "plain words")]),
        _message("tool_result", [_part("c3", error="division by zero")]),
    ]
    sent = to_llm_messages("", rows)
    assert sent == [
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps(weather)},
        {"role": "tool", "tool_call_id": "c2", "content": '"plain words"'},
        {"role": "tool", "tool_call_id": "c3", "content": '{"error": "division by zero"}'},
    ]
    assert sent[0]["content"] == rows[0].content[0]["result"][0]["text"]


def test_a_tool_message_in_the_old_form_reads_as_it_did() -> None:
    """A row a worker of the previous release writes while an upgrade rolls out (migration 0012
    rewrote the stored ones): the result itself in the part."""
    old: list[dict[str, Any]] = [
        {"type": "tool_result", "tool_call_id": "c1", "result": {"result": 3}, "error": None},
        {"type": "tool_result", "tool_call_id": "c2", "result": None, "error": "boom"},
    ]
    message = message_to_schema(_message("tool_result", old))
    assert [(r.tool_call_id, r.result, r.error) for r in message.tool_results or []] == [
        ("c1", {"result": 3}, None),
        ("c2", None, "boom"),
    ]
    assert [m["content"] for m in to_llm_messages("", [_message("tool_result", old)])] == [
        '{"result": 3}',
        '{"error": "boom"}',
    ]


def test_tool_call_completed_holds_the_same_text() -> None:
    part = tool_result_part("c1", {"result": 5}, None)
    data = ev.to_data(ev.ToolCallCompleted.of(part, "add", "success"))
    assert data == {
        "tool_call_id": "c1",
        "tool_name": "add",
        "success": True,
        "status": "success",
        "result": [{"type": "text", "text": '{"result": 5}'}],
        "error": None,
    }
    assert data["result"][0]["text"] == model_text(part)
    # A failed call: no result (absent, as Everruns omits it), the error.
    failed = ev.to_data(ev.ToolCallCompleted.of(tool_result_part("c2", None, "boom"), "add", "timeout"))
    assert failed == {
        "tool_call_id": "c2",
        "tool_name": "add",
        "success": False,
        "status": "timeout",
        "error": "boom",
    }
    decoded = ev.from_data("tool.call_completed", failed)
    assert isinstance(decoded, ev.ToolCallCompleted) and decoded.result is msgspec.UNSET


def test_what_json_cannot_hold_is_made_json_or_an_error() -> None:
    status, result, error = _passed_on(
        {
            "raw": b"\xff\x00ok",  # bytes: base64 text
            "ratio": float("nan"),  # not JSON: null
            "decoded": "caf\udce9",  # text decoded from invalid UTF-8 (surrogateescape)
            "nul": "a\x00b",  # valid JSON, refused inside a jsonb string: escaped in the text
            "tags": ("x", "y"),
        }
    )
    assert (status, error) == ("success", None)
    assert result == {
        "raw": "/wBvaw==",
        "ratio": None,
        "decoded": "caf\ufffd",
        "nul": "a\x00b",
        "tags": ["x", "y"],
    }
    text = tool_result_part("c", result, None).result[0].text
    assert "\x00" not in text and json.loads(text) == result
    msgspec.json.encode(result)  # the API can send it (no lone surrogate left)

    status, result, error = _passed_on({"handle": object()})
    assert (status, result) == ("error", None)
    assert error is not None and error.startswith("the tool returned a value that is not JSON data")

    status, result, error = _passed_on("x" * RESULT_MAX_CHARS)
    assert (status, result) == ("error", None)
    assert error == (
        f"the tool's result is too large to pass on: {RESULT_MAX_CHARS + 2} characters of JSON, "
        f"at most {RESULT_MAX_CHARS}"
    )
