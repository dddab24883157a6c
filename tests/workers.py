"""`everloop worker` processes for tests that kill them: a real process per worker, on the test's
task queue, its output in the test's directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from core.settings import Settings
from tests.conftest import TEST_MASTER_KEY

ROOT = Path(__file__).resolve().parents[1]


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
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "everloop.cli", "worker"], cwd=ROOT, env=self.env, stdout=log, stderr=log
        )
        self.started.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
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
