"""Session workflow histories replay with today's code; a few are saved so a change that breaks
determinism fails CI (tests/workflows/test_stack_check.py replays every saved history)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from temporalio.client import WorkflowContinuedAsNewError, WorkflowHistory

from everloop.worker import WORKFLOWS
from tests.loop.conftest import Loop
from tests.replaying import replay

HISTORIES = Path(__file__).resolve().parents[1] / "workflows" / "histories"


async def _turn_history(loop: Loop, base: str) -> WorkflowHistory:
    """The whole history of the run that did the turn. A session's workflow starts with its first
    message, so its first run does the turn and then continues as new: wait for that run to close
    (bounded, so a stuck run fails with its state instead of hanging until the suite's timeout)."""
    workflow_id = f"session-{base.rsplit('/', 1)[1]}"
    described = await loop.temporal.get_workflow_handle(workflow_id).describe()
    first = described.raw_description.workflow_execution_info.first_run_id
    run = loop.temporal.get_workflow_handle(workflow_id, run_id=first)
    try:
        async with asyncio.timeout(60):
            with pytest.raises(WorkflowContinuedAsNewError):
                await run.result(follow_runs=False)
    except TimeoutError:
        stuck = await run.describe()
        pytest.fail(f"the turn's run did not continue as new within 60 s: {stuck.raw_description}")
    return await run.fetch_history()


@pytest.mark.parametrize(
    ("name", "simulator", "capabilities"),
    [
        (
            "session_local_tool_turn",
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
    result = await replay(history, WORKFLOWS)
    assert result.replay_failure is None
    if os.environ.get("EVERLOOP_RECORD_HISTORIES"):
        (HISTORIES / f"{name}.json").write_text(history.to_json())
