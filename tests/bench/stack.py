"""A benchmark's own embedded stack: fresh, on free ports, without fsync, migrated; stopped after."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from core.migrate import upgrade
from core.settings import load_settings
from everloop.stack import EmbeddedStack, Endpoints


def run_on_fresh_stack(bench: Callable[[Endpoints, Path], Coroutine[Any, Any, None]]) -> int:
    """Runs `bench(endpoints, data_dir)` on a stack of its own; the process's exit code."""
    with tempfile.TemporaryDirectory(prefix="everloop-bench-") as tmp:
        data_dir = Path(tmp)
        env = {"EVERLOOP_DATA_DIR": str(data_dir)}
        env |= {f"EMBEDDED_{part}_PORT": "0" for part in ("POSTGRES", "REDIS", "TEMPORAL", "TEMPORAL_UI")}
        stack = EmbeddedStack(load_settings(env), durable=False)
        try:
            print("starting the embedded stack...", flush=True)
            endpoints = stack.start()
            upgrade(endpoints.database_url)
            asyncio.run(bench(endpoints, data_dir))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            stack.stop()
    return 0
