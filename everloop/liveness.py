"""The worker's liveness file (WORKER_LIVENESS_FILE): touched from the worker's event loop while its
Temporal worker runs, so the file's age tells the liveness probe (`deploy/healthcheck.py worker
--live`) that the process still turns, without asking Temporal. Whether Temporal hears from the
worker is another question (busy slots stop polling, and Temporal may be away): readiness and
alerts ask that one, never a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.worker import Worker

EVERY_S = 5.0


async def touch_forever(path: Path | None, worker: Worker, every_s: float = EVERY_S) -> None:
    """Touches `path` every `every_s` seconds while `worker` runs; without a path, returns at once.
    A loop blocked by a stuck task, or a worker that has shut down, stops the touches."""
    if path is None:
        return
    while True:
        if worker.is_running:
            # Off the loop, as any file I/O here; a blocked loop still never awaits it.
            await asyncio.to_thread(path.touch)
        await asyncio.sleep(every_s)
