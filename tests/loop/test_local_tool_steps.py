"""A short built-in tool's call (a local activity) stores its start and its result in one
transaction; a regular tool's call in two, its start first. Read from PostgreSQL's `xmin`, the
transaction that wrote each row."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text

from tests.loop.conftest import Loop


async def test_a_local_call_is_one_transaction_and_a_regular_call_two(loop: Loop) -> None:
    base = await loop.chat(
        simulator={
            "mode": "script",
            "script": [
                {
                    "tool_calls": [
                        {"name": "add", "arguments": {"a": 2, "b": 3}},
                        {"name": "list_directory", "arguments": {"path": "/"}},
                    ]
                },
                "5, and nothing in /.",
            ],
        },
        capabilities=["test_math", "session_file_system"],
    )
    frames = await loop.send(base, "go")
    assert frames[-1]["type"] == "turn.completed"
    session_id = uuid.UUID(base.rsplit("/", 1)[1])
    async with loop.db.session() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT type, data, ts, xmin::text FROM events WHERE session_id = :id"
                    " AND type IN ('tool.call_started', 'tool.call_completed') ORDER BY sequence"
                ),
                {"id": session_id},
            )
        ).all()
        results: dict[str, str] = dict(
            (
                await s.execute(
                    text(
                        "SELECT metadata->>'tool_name', xmin::text FROM messages"
                        " WHERE session_id = :id AND role = 'tool_result'"
                    ),
                    {"id": session_id},
                )
            ).all()
        )

    def of(tool: str, kind: str) -> tuple[object, str]:
        [(ts, xmin)] = [
            (r.ts, r.xmin)
            for r in rows
            if r.type == kind and (r.data.get("tool_call") or {}).get("name", r.data.get("tool_name")) == tool
        ]
        return ts, xmin

    (add_start, add_start_tx), (add_end, add_end_tx) = (
        of("add", "tool.call_started"),
        of("add", "tool.call_completed"),
    )
    assert add_start_tx == add_end_tx == results["add"], "the local call: one transaction"
    assert isinstance(add_start, datetime) and isinstance(add_end, datetime)
    assert add_start < add_end, "the start keeps the time the call began"
    (_, list_start_tx), (_, list_end_tx) = (
        of("list_directory", "tool.call_started"),
        of("list_directory", "tool.call_completed"),
    )
    assert list_start_tx != list_end_tx == results["list_directory"], "the regular call: its start first"
