"""The one heartbeat of the loop's activities: every second while a block runs, on a timer (not per
token or per row), so a slow first token or a slow database is not a dead worker, a cancel reaches
the activity within about a second, and the details given ride on every beat (Temporal keeps only
the latest beat's). `cancel_requested` is the cancel as a state, for loops to check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from temporalio import activity

EVERY_S = 1.0


@asynccontextmanager
async def heartbeating(*details: Any) -> AsyncIterator[None]:
    """Heartbeats with `details` while the block runs. Outside an activity, or in a local one (which
    cannot heartbeat), it does nothing."""
    if not in_activity() or activity.info().is_local:
        yield
        return
    task = asyncio.create_task(_beat(details))
    try:
        yield
    finally:
        task.cancel()


async def _beat(details: tuple[Any, ...]) -> None:
    while True:
        activity.heartbeat(*details)
        await asyncio.sleep(EVERY_S)


def cancel_requested() -> bool:
    """Whether Temporal has asked this activity to stop. The SDK says so once, by cancelling the
    activity's task, and on Python 3.11 that CancelledError can be lost: `asyncio.wait_for` returns
    its inner result instead when that is ready in the same instant (fixed in 3.12), and redis-py
    sends every publish through one, so a cancel landing as a delta is published is swallowed and
    the call streams to its end. The flag stays set: a loop checks it at each step of its own."""
    return in_activity() and activity.is_cancelled()


def in_activity() -> bool:
    try:
        activity.info()
    except RuntimeError:  # the sweeper, a test
        return False
    return True
