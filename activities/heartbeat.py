"""The one heartbeat of the loop's activities: every second while a block runs, on a timer (not per
token or per row), so a slow first token or a slow database is not a dead worker, a cancel reaches
the activity within about a second, and the details given ride on every beat (Temporal keeps only
the latest beat's)."""

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


def in_activity() -> bool:
    try:
        activity.info()
    except RuntimeError:  # the sweeper, a test
        return False
    return True
