"""`everloop worker` processes for tests that kill them: a real process per worker, on the test's
task queue, its output in the test's directory (forked ready-imported: tests/processes.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from core.settings import Settings
from tests import processes
from tests.conftest import TEST_MASTER_KEY
from tests.processes import CliProcess


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a worker for `settings`' services and task queue."""
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "TEMPORAL_ADDRESS": settings.temporal_address or "",
        "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "SECRETS_ENCRYPTION_KEY": TEST_MASTER_KEY,
        "LOG_LEVEL": "WARNING",
        **extra,
    }


class Workers:
    """The worker processes a test started; `stop_all` ends what is left."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.started: list[CliProcess] = []

    def start(self) -> CliProcess:
        process = processes.start(["worker"], self.env, self.log_dir / f"worker-{len(self.started)}.log")
        self.started.append(process)
        return process

    def kill(self, process: CliProcess) -> None:
        process.send_signal(signal.SIGKILL)  # no chance to clean up
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
