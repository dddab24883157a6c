"""`parallel_tool_calls` on an agent or a session reaches the provider: with `false` the model asks
for one tool call at a time (the simulator answers as OpenAI's models do), and the turn still ends
with every call answered."""

from __future__ import annotations

from typing import Any

import pytest

from tests.loop.conftest import Loop

TWO_CALLS: list[Any] = [
    {
        "tool_calls": [
            {"name": "add", "arguments": {"a": 1, "b": 2}},
            {"name": "add", "arguments": {"a": 3, "b": 4}},
        ]
    },
    "done",
]


async def _calls_in_first_reply(loop: Loop, base: str) -> int:
    await loop.send(base, "add twice")
    messages = await loop.messages(base)
    return len(messages[1]["tool_calls"] or [])


@pytest.mark.parametrize(
    ("agent_value", "session_value", "expected"),
    [(None, None, 2), (False, None, 1), (False, True, 2), (True, False, 1)],
)
async def test_the_setting_reaches_the_model(
    loop: Loop, agent_value: bool | None, session_value: bool | None, expected: int
) -> None:
    agent_fields = {} if agent_value is None else {"parallel_tool_calls": agent_value}
    base = await loop.chat(
        simulator={"mode": "script", "script": TWO_CALLS}, capabilities=["test_math"], **agent_fields
    )
    if session_value is not None:
        patched = await loop.client.patch(base, json={"parallel_tool_calls": session_value})
        assert patched.status_code == 200, patched.text
    assert await _calls_in_first_reply(loop, base) == expected
    messages = await loop.messages(base)
    assert messages[-1]["role"] == "agent"
    # Every call asked for is answered before the model's next reply.
    asked = [c["id"] for m in messages if m["role"] == "agent" for c in (m["tool_calls"] or [])]
    answered = [r["tool_call_id"] for m in messages if m["role"] == "tool_result" for r in m["tool_results"]]
    assert sorted(asked) == sorted(answered)
