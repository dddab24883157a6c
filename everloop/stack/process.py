"""Child processes that cannot outlive their parent, and readiness waits that say what failed."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from everloop.stack.errors import StackError

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent(sig: int) -> Callable[[], None]:
    parent = os.getpid()

    def preexec() -> None:
        # Runs in the child after the uid switch (which would clear the setting): if the parent dies,
        # even by SIGKILL, the kernel sends `sig`, so no service is left behind.
        _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)
        # A terminal's Ctrl-C goes to the whole foreground group; the supervisor stops children in order.
        os.setpgid(0, 0)

    return preexec


class ManagedProcess:
    """One child process, its log file, and an orderly stop."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path | None,
        env: Mapping[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.stop_signal = stop_signal
        self.user = user
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Starts the process; its output goes to `log_path`, or to ours when that is None."""
        with contextlib.ExitStack() as stack:
            log = None
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = stack.enter_context(self.log_path.open("ab"))
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                env=self.env,
                cwd=self.cwd,
                **as_user(self.user),
                preexec_fn=_die_with_parent(self.stop_signal),
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def exited(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None:
            return "(see the output above)"
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(self.stop_signal)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            self.popen.wait()


def as_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments that run a child as `user` with only that user's group (not ours:
    root's group would otherwise decide access to root-owned directories)."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def wait_until(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    process: ManagedProcess | None = None,
    interval: float = 0.05,
) -> None:
    """Polls `check` until it is true; fails fast if `process` exits, and names `what` on failure."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and (code := process.exited()) is not None:
            raise StackError(
                f"{what} exited with code {code} before it was ready. Log {process.log_path}:\n"
                f"{process.log_tail()}"
            )
        if check():
            return
        if time.monotonic() > deadline:
            tail = f" Log {process.log_path}:\n{process.log_tail()}" if process and process.log_path else ""
            raise StackError(f"{what} was not ready within {timeout:.0f} s.{tail}")
        time.sleep(interval)


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def claim_port(port: int, what: str, setting: str, host: str = "127.0.0.1") -> int:
    """Returns `port`, or a free one when it is 0; refuses a port another program holds."""
    if port == 0:
        return free_port(host)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the services themselves bind: connections of a just-stopped PostgreSQL or Redis linger
        # in TIME_WAIT on the port for a minute and must not count as a program holding it. The
        # bind still fails while a socket listens on the port, which is what this looks for.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise StackError(
                f"port {port} for {what} is in use by another program; set {setting} to another port "
                "(0 picks a free one)"
            ) from None
    return port
