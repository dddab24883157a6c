"""`changes_from_original` of a fork (services/forks._changes): the modifications at the fork step,
then each differing field step by step, tool calls compared without their ids."""

from __future__ import annotations

import uuid
from typing import Any

from core.db.models import Replay, Span
from services.forks import _changes


def _span(kind: str, name: str, model: str | None = None) -> Span:
    return Span(id=uuid.uuid4(), kind=kind, name=name, model=model, status="ok")


def _reply(text: str, *calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "text": text,
        "tool_calls": [
            {"type": "tool_call", "id": str(uuid.uuid4()), "name": n, "arguments": a} for n, a in calls
        ],
    }


def test_changes_name_the_modifications_then_what_differs_step_by_step() -> None:
    replay = Replay(config={"modifications": {"model": "small", "temperature": 0}, "fork_from_step": 1})
    original = [_span("llm", "reason", "big"), _span("tool", "search"), _span("llm", "reason", "big")]
    forked = [_span("llm", "reason", "small"), _span("tool", "lookup")]
    contents: dict[uuid.UUID, tuple[Any, Any]] = {
        original[0].id: ({"temperature": 0.7}, _reply("", ("search", {"q": "a"}))),
        original[1].id: ({}, {"result": 1}),
        original[2].id: ({}, _reply("Found it.")),
        # The same call in another run has another id: only name and arguments count.
        forked[0].id: ({}, _reply("", ("lookup", {"q": "a"}))),
        forked[1].id: ({}, {"result": 1}),
    }
    changes = {
        (c["step"], c["field"]): (c["original"], c["modified"])
        for c in _changes(replay, original, forked, 1, contents)
    }
    assert changes[(1, "model")] == ("big", "small")
    assert changes[(1, "temperature")] == (0.7, 0)
    assert changes[(1, "tool_calls")] == (
        [{"name": "search", "arguments": {"q": "a"}}],
        [{"name": "lookup", "arguments": {"q": "a"}}],
    )
    assert changes[(2, "name")] == ("search", "lookup")
    assert (2, "output") not in changes  # the same result
    assert changes[(3, "step")] == ({"type": "llm", "name": "reason"}, None)  # only the original has it
    assert len(changes) == 5


def test_the_same_run_again_has_no_changes() -> None:
    replay = Replay(config={"modifications": {}, "fork_from_step": 1})
    spans = [_span("llm", "reason", "m")]
    again = [_span("llm", "reason", "m")]
    contents: dict[uuid.UUID, tuple[Any, Any]] = {
        spans[0].id: ({}, _reply("hi", ("add", {"a": 1}))),
        again[0].id: ({}, _reply("hi", ("add", {"a": 1}))),
    }
    assert _changes(replay, spans, again, 1, contents) == []
