"""Claim-check: a long session with big messages keeps every workflow history small."""

from __future__ import annotations

import time

from temporalio.client import WorkflowHistory

from tests.loop.conftest import Loop

TURNS = 200
MESSAGE_BYTES = 50 * 1024
HISTORY_LIMIT = 1024 * 1024


async def test_200_turns_of_50_kb_keep_every_history_under_1_mb(loop: Loop) -> None:
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
    while run_id:
        history: WorkflowHistory = await loop.temporal.get_workflow_handle(
            workflow_id, run_id=run_id
        ).fetch_history()
        sizes.append(sum(event.ByteSize() for event in history.events))
        run_id = (
            history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id or None
        )
    print(f"\n{TURNS} turns in {elapsed:.1f} s; {len(sizes)} runs; largest history {max(sizes)} bytes")
    assert len(sizes) >= TURNS  # one run per turn (plus the waiting one, once it has started)
    assert max(sizes) < HISTORY_LIMIT
    messages = (await loop.client.get(f"{base}/messages", params={"limit": 1})).json()
    assert messages["total"] == 2 * TURNS
