from __future__ import annotations

import uuid
from datetime import UTC, datetime

from core.db.models import Message
from services.sessions import message_to_schema


def _message(role: str, content: list[dict[str, object]]) -> Message:
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
    message = message_to_schema(
        _message(
            "tool_result",
            [
                {"type": "tool_result", "tool_call_id": "c1", "result": {"result": 3}},
                {"type": "tool_result", "tool_call_id": "c2", "error": "division by zero"},
            ],
        )
    )
    assert [(r.tool_call_id, r.result, r.error) for r in message.tool_results or []] == [
        ("c1", {"result": 3}, None),
        ("c2", None, "division by zero"),
    ]
    assert message.tool_calls is None
