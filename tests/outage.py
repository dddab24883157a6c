"""Dependency outages on demand: a PostgreSQL and a Redis of a test's own, on free ports in the
test's temporary directory, that the test stops, starts, freezes and thaws.

Built on the embedded stack's own starters (`everloop.stack`), so the servers are the ones `everloop dev`
runs. Every call blocks until the server is in the state asked for (accepting, refusing); from an
async test whose event loop must keep serving meanwhile, call them through `asyncio.to_thread`.

    with own_postgres(tmp_path) as pg:
        settings = make_settings(endpoints, DATABASE_URL=pg.url)
        pg.stop()     # connections are refused
        pg.start()    # same data, same port
        pg.freeze()   # connections and queries hang: nothing answers, nothing is refused
        pg.thaw()

The context managers thaw and stop whatever is left, whatever the test did.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil

from core.migrate import upgrade
from everloop.stack.postgres import start_postgres
from everloop.stack.process import ManagedProcess, free_port, port_open
from everloop.stack.services import start_redis

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def _wait_closed(port: int, what: str) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} still accepts on port {port} after {STOP_TIMEOUT_S:.0f} s")
        time.sleep(0.05)


def _kill_group(process: ManagedProcess) -> None:
    """SIGKILL to the process and everything it started: ManagedProcess makes each child a process
    group leader, and PostgreSQL's backends stay in its group. A postmaster killed alone would leave
    backends holding its shared memory, and a new one refuses to start next to them."""
    popen = process.popen
    if popen is None or popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()


class OwnPostgres:
    """One PostgreSQL server with the `everloop` database migrated to head."""

    def __init__(self, root: Path, *, durable: bool = False) -> None:
        self.data_dir = root / "postgres"
        self.log_dir = root / "logs"
        self.port = free_port()
        self.durable = durable
        self.process: ManagedProcess | None = None
        self.url = ""  # postgresql+asyncpg://... of the everloop database, for Database and settings
        self._frozen: list[psutil.Process] = []

    @property
    def dsn(self) -> str:
        """The same database as a libpq URL, for `asyncpg.connect` directly."""
        return self.url.replace("postgresql+asyncpg://", "postgresql://", 1)

    @property
    def log_path(self) -> Path:
        return self.log_dir / "postgres.log"

    def start(self) -> None:
        """Starts the server on its data directory and port; returns once it accepts connections."""
        if self.process is not None and self.process.exited() is None:
            raise AssertionError("PostgreSQL is running already")
        self.process, self.url = start_postgres(
            self.data_dir, self.log_dir, self.port, durable=self.durable, timeout=START_TIMEOUT_S
        )

    def stop(self, *, kill: bool = False) -> None:
        """Fast shutdown (clients are disconnected, the data is checkpointed), or with `kill` a
        SIGKILL of the postmaster and its backends (a crash: the next start recovers from the WAL).
        Returns once the port refuses connections.

        Unless the server is `durable`, it runs like the test stack's, with `synchronous_commit=off`:
        a kill can then lose commits of the last fraction of a second that were already
        acknowledged. Tests that kill it and count what was stored want `durable=True`."""
        self.thaw()  # a stopped process cannot act on the shutdown signal
        if self.process is not None:
            if kill:
                _kill_group(self.process)
            else:
                self.process.stop(timeout=STOP_TIMEOUT_S)
        _wait_closed(self.port, "PostgreSQL")

    def freeze(self) -> None:
        """SIGSTOP to the postmaster and every process it started: a hung server. New connections
        are taken into the kernel's backlog and never answered; open ones send into a void."""
        popen = self.process.popen if self.process is not None else None
        if popen is None or popen.poll() is not None:
            raise AssertionError("PostgreSQL is not running")
        postmaster = psutil.Process(popen.pid)
        # The postmaster first, so that it forks no new backend after its children are listed.
        postmaster.send_signal(signal.SIGSTOP)
        self._frozen.append(postmaster)
        for child in postmaster.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signal.SIGSTOP)
                self._frozen.append(child)

    def thaw(self) -> None:
        """SIGCONT to everything `freeze` stopped; a no-op when nothing is frozen."""
        frozen, self._frozen = self._frozen, []  # the postmaster last: the reverse of freeze
        for process in reversed(frozen):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)

    @property
    def frozen(self) -> bool:
        return bool(self._frozen)

    def close(self) -> None:
        self.thaw()
        if self.process is not None:
            # A clean shutdown, though the data is thrown away: a killed postmaster leaves its
            # System V shared memory segment behind, one more for every test.
            self.process.stop(timeout=STOP_TIMEOUT_S)


class OwnRedis:
    """One Redis server (nothing persisted, like the embedded one)."""

    def __init__(self, root: Path) -> None:
        self.work_dir = root / "redis"
        self.log_dir = root / "logs"
        self.port = free_port()
        self.process: ManagedProcess | None = None
        self.url = ""

    def start(self) -> None:
        """Starts Redis on its port; returns once it answers PING."""
        if self.process is not None and self.process.exited() is None:
            raise AssertionError("Redis is running already")
        self.process, self.url = start_redis(self.work_dir, self.log_dir, self.port, timeout=START_TIMEOUT_S)

    def stop(self) -> None:
        """SIGKILL; returns once the port refuses connections."""
        if self.process is not None:
            _kill_group(self.process)
        _wait_closed(self.port, "Redis")

    def close(self) -> None:
        if self.process is not None:
            _kill_group(self.process)


def _migrate(url: str) -> None:
    # Alembic's env.py runs an event loop of its own, which cannot start inside a running one (an
    # async test or fixture): a thread has none.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(upgrade, url).result()


@contextmanager
def own_postgres(tmp_path: Path, *, durable: bool = False) -> Iterator[OwnPostgres]:
    """A running PostgreSQL with the `everloop` database at the head migration, gone afterwards.
    `durable` keeps fsync and synchronous commits on (slower; see `OwnPostgres.stop`)."""
    server = OwnPostgres(tmp_path / "own-postgres", durable=durable)
    try:
        server.start()
        _migrate(server.url)
        yield server
    finally:
        server.close()


@contextmanager
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A running Redis, gone afterwards."""
    server = OwnRedis(tmp_path / "own-redis")
    try:
        server.start()
        yield server
    finally:
        server.close()
