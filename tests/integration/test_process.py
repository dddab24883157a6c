"""`ManagedProcess` with real child processes: a child that dies fails the wait with its log, a
wait names what it waited for, a stop escalates to a kill."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from everloop.stack import StackError
from everloop.stack.process import ManagedProcess, wait_until


def _python(code: str, tmp_path: Path, **kwargs: object) -> ManagedProcess:
    process = ManagedProcess("probe", [sys.executable, "-c", code], log_path=tmp_path / "probe.log", **kwargs)  # type: ignore[arg-type]
    process.start()
    return process


def test_a_child_that_dies_fails_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    process = _python("import sys; print('bad config line'); sys.exit(3)", tmp_path)
    started = time.monotonic()
    with pytest.raises(StackError) as info:
        wait_until("Probe service", lambda: False, timeout=30, process=process)
    assert time.monotonic() - started < 10  # did not sit out the timeout
    message = str(info.value)
    assert message.startswith("Probe service exited with code 3")
    assert "bad config line" in message


def test_a_wait_that_never_succeeds_names_what_was_waited_for(tmp_path: Path) -> None:
    process = _python("import time; time.sleep(30)", tmp_path)
    try:
        with pytest.raises(StackError, match=r"^Probe service was not ready within 0 s"):
            wait_until("Probe service", lambda: False, timeout=0.3, process=process)
    finally:
        process.stop()


def test_stop_escalates_to_kill_when_the_signal_is_ignored(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(60)"
    )
    process = _python(code, tmp_path)
    wait_until("probe", lambda: "up" in (tmp_path / "probe.log").read_text(), timeout=10)
    process.stop(timeout=0.5)
    assert process.exited() == -signal.SIGKILL
