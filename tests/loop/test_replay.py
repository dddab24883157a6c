"""Session workflow histories replay with today's code; a few are saved so a change that breaks
determinism fails CI (tests/workflows/test_stack_check.py replays every saved history)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowContinuedAsNewError, WorkflowHistory
from temporalio.worker import Replayer

from core.converter import data_converter
from everloop.worker import WORKFLOWS
from tests.loop.conftest import Loop

HISTORIES = Path(__file__).resolve().parents[1] / "workflows" / "histories"


async def _turn_history(loop: Loop, base: str) -> WorkflowHistory:
    """The whole history of the run that did the turn (the one that then continued as new)."""
    workflow_id = f"session-{base.rsplit('/', 1)[1]}"
    run_id = (await loop.temporal.get_workflow_handle(workflow_id).describe()).run_id
    run = loop.temporal.get_workflow_handle(workflow_id, run_id=run_id)
    history = await run.fetch_history()
    if not any(e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED for e in history.events):
        # Already the next run, which only waits for a message: take the one it continued from.
        previous = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        run = loop.temporal.get_workflow_handle(workflow_id, run_id=previous)
    else:
        with pytest.raises(WorkflowContinuedAsNewError):
            await run.result(follow_runs=False)
    return await run.fetch_history()


@pytest.mark.parametrize(
    ("name", "simulator", "capabilities"),
    [
        (
            "session_tool_turn",
            {
                "mode": "script",
                "script": [
                    {
                        "tool_calls": [
                            {"name": "add", "arguments": {"a": 1, "b": 2}},
                            {"name": "divide", "arguments": {"a": 1, "b": 0}},
                        ]
                    },
                    "3, and no division by zero",
                ],
            },
            ["test_math"],
        ),
        ("session_failed_turn", {"error": {"status": 401}}, []),
    ],
)
async def test_session_histories_replay(
    loop: Loop, name: str, simulator: dict[str, object], capabilities: list[str]
) -> None:
    base = await loop.chat(simulator=simulator, capabilities=capabilities)
    await loop.send(base, "go")
    history = await _turn_history(loop, base)
    result = await Replayer(workflows=WORKFLOWS, data_converter=data_converter).replay_workflow(
        history, raise_on_replay_failure=True
    )
    assert result.replay_failure is None
    if os.environ.get("EVERLOOP_RECORD_HISTORIES"):
        (HISTORIES / f"{name}.json").write_text(history.to_json())
