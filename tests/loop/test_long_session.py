"""Claim-check: a long session with big messages keeps every workflow history small.

Each turn is a run of its own (continue-as-new after every turn) and the messages travel by id, so
what is to prove is that no run's history holds a message (each is smaller than one message) and
that a run grows only by the handled message ids it carries over (bounded by
workflows/session.HANDLED_KEPT). Twenty turns show both; the session's stored conversation grows to
1 MB, which every turn reads back (200 turns made this the suite's slowest test for no more proof)."""

from __future__ import annotations

import time

from temporalio.client import WorkflowHistory

from tests.loop.conftest import Loop

TURNS = 20
MESSAGE_BYTES = 50 * 1024


async def test_turns_of_50_kb_keep_every_history_smaller_than_one_message(loop: Loop) -> None:
    base = await loop.chat(simulator={"mode": "fixed", "text": "ok"})
    started = time.monotonic()
    for turn in range(TURNS):
        text = f"turn {turn} " + "x" * (MESSAGE_BYTES - 16)
        frames = await loop.send(base, text, timeout=60)
        assert frames[-1]["type"] == "turn.completed"
    elapsed = time.monotonic() - started

    workflow_id = f"session-{base.rsplit('/', 1)[1]}"
    run_id: str | None = (await loop.temporal.get_workflow_handle(workflow_id).describe()).run_id
    sizes: list[int] = []
    # What each run that did a turn was started with (not the run that waits for the next message):
    # the state carried over by continue-as-new. Measured on its own because a run's whole history
    # also holds events a loaded machine adds (a workflow task timed out and scheduled again), which
    # are not growth and once pushed the total past a bound in CI.
    carried: list[int] = []
    while run_id:
        history: WorkflowHistory = await loop.temporal.get_workflow_handle(
            workflow_id, run_id=run_id
        ).fetch_history()
        sizes.append(sum(event.ByteSize() for event in history.events))
        if any(event.HasField("activity_task_scheduled_event_attributes") for event in history.events):
            carried.append(history.events[0].workflow_execution_started_event_attributes.input.ByteSize())
        run_id = (
            history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id or None
        )
    print(f"\n{TURNS} turns in {elapsed:.1f} s; {len(sizes)} runs; largest history {max(sizes)} bytes")
    assert len(sizes) >= TURNS  # one run per turn (plus the waiting one, once it has started)
    # No message is in any history. What a run carries over grows only by the ids of the messages
    # it has handled (about 40 bytes a turn), capped at the last HANDLED_KEPT (8 KB in all).
    assert max(sizes) < MESSAGE_BYTES, sizes
    assert len(carried) == TURNS and max(carried) - min(carried) <= TURNS * 50, carried
    messages = (await loop.client.get(f"{base}/messages", params={"limit": 1})).json()
    assert messages["total"] == 2 * TURNS
