"""`everloop` commands as real processes of their own, forked from a process that has already
imported the code, for tests that kill or stop them.

Starting `python -m everloop.cli worker` costs 9 s of imports on a quiet machine (litellm alone is
5 s) and twice that when both cores are busy, and the tests that kill a worker start two each: the
boot was most of their time. A fork of a process that imported it all costs milliseconds. The child
is still a separate process running the `everloop` command's own code from its start, with its own
environment and log file, and a SIGKILL ends it as it ends any process: what the tests prove about
a killed worker or a second API process is unchanged. (`tests/stack/test_dev.py` and
`tests/integration/test_cli.py` still exec the `everloop` command itself.)

The fork server is the standard library's (`multiprocessing`'s "forkserver"): one per test process,
started on first use, which imports the modules below before it forks anything. Importing them
starts no thread (checked: one thread after the imports), so forking it is safe."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from everloop.stack.process import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
PRELOAD = ["everloop.cli", "everloop.worker", "api.app"]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


def _run(args: list[str], env: dict[str, str], log_path: str) -> None:
    """The child: the `everloop` command `args`, as `python -m everloop.cli` would run it."""
    os.environ.clear()
    os.environ.update(env)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.chdir(ROOT)
    # The command handles SIGTERM as it would standing alone; the fork server's child starts with
    # Python's default SIGINT handler, which the command replaces where it cares.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from everloop.cli import main

    try:
        main(args=args, prog_name="everloop")  # click: ends with SystemExit
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


class CliProcess:
    """A started command, with the part of `subprocess.Popen`'s interface the tests use."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def send_signal(self, signum: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["everloop"], timeout or 0)
        return self._process.exitcode


def start(args: Sequence[str], env: Mapping[str, str], log_path: Path) -> CliProcess:
    """Starts `everloop <args>` with exactly `env` as its environment, its output in `log_path`."""
    process = _context.Process(target=_run, args=(list(args), dict(env), str(log_path)), daemon=True)
    process.start()
    return CliProcess(process)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def api_processes(env: Mapping[str, str], log_dir: Path, count: int = 2) -> Iterator[list[str]]:
    """`count` `everloop api` processes with `env`, each on a free port; their base URLs once all
    answer `/health`. They are terminated on leaving."""
    processes, bases = [], []
    try:
        for index in range(count):
            port = free_port()
            processes.append(
                start(["api"], {**env, "EVERLOOP_PORT": str(port)}, log_dir / f"api-{index}.log")
            )
            bases.append(f"http://127.0.0.1:{port}")
        for base in bases:
            wait_until(f"the API at {base}", functools.partial(_healthy, base), timeout=60)
        yield bases
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)
