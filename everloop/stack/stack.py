"""Starts what the settings leave unset, in order, under one lock on the data directory."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

import msgspec

from core.settings import Settings
from everloop.stack.errors import StackError
from everloop.stack.postgres import start_postgres
from everloop.stack.process import ManagedProcess, claim_port
from everloop.stack.services import start_redis, start_temporal


class Endpoints(msgspec.Struct, kw_only=True, frozen=True):
    """Where each backing service answers, embedded or real."""

    database_url: str
    redis_url: str
    temporal_address: str
    temporal_ui_url: str | None = None

    def as_env(self) -> dict[str, str]:
        env = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
        }
        if self.temporal_ui_url:
            env["TEMPORAL_UI_URL"] = self.temporal_ui_url
        return env


class EmbeddedStack:
    """The embedded PostgreSQL, Redis and Temporal, each started only where its setting is unset.

    `durable=False` (tests) trades crash safety for speed: no fsync, Temporal in memory, no UI.
    """

    def __init__(self, settings: Settings, *, durable: bool = True) -> None:
        self.settings = settings
        self.durable = durable
        self.data_dir = settings.data_dir
        self.log_dir = self.data_dir / "logs"
        self.processes: list[ManagedProcess] = []
        self._lock_file: IO[str] | None = None

    def start(self) -> Endpoints:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Endpoints:
        s = self.settings
        timeout = s.startup_timeout_s
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        # Claim every fixed port before starting anything, so a clash is reported before any work.
        pg_port = claim_port(s.embedded_postgres_port, "the embedded PostgreSQL", "EMBEDDED_POSTGRES_PORT")
        redis_port = claim_port(s.embedded_redis_port, "the embedded Redis", "EMBEDDED_REDIS_PORT")
        t_port = claim_port(s.embedded_temporal_port, "the embedded Temporal", "EMBEDDED_TEMPORAL_PORT")
        ui_port = (
            claim_port(s.embedded_temporal_ui_port, "the Temporal UI", "EMBEDDED_TEMPORAL_UI_PORT")
            if self.durable
            else None
        )

        database_url = s.database_url
        if database_url is None:
            pg, database_url = start_postgres(
                self.data_dir / "postgres", self.log_dir, pg_port, durable=self.durable, timeout=timeout
            )
            self.processes.append(pg)
        redis_url = s.redis_url
        if redis_url is None:
            redis, redis_url = start_redis(self.data_dir / "redis", self.log_dir, redis_port, timeout=timeout)
            self.processes.append(redis)
        temporal_address = s.temporal_address
        temporal_ui_url = s.temporal_ui_url
        if temporal_address is None:
            db_file = self.data_dir / "temporal" / "temporal.db" if self.durable else None
            temporal, temporal_address = start_temporal(
                db_file, self.log_dir, t_port, ui_port, s.temporal_namespace, timeout=timeout
            )
            self.processes.append(temporal)
            if ui_port is not None:
                temporal_ui_url = f"http://127.0.0.1:{ui_port}"
        return Endpoints(
            database_url=database_url,
            redis_url=redis_url,
            temporal_address=temporal_address,
            temporal_ui_url=temporal_ui_url,
        )

    def _lock(self) -> None:
        path = self.data_dir / "everloop.lock"
        lock_file = path.open("a+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise StackError(
                f"another everloop (pid {holder}) is already running on the data directory {self.data_dir}; "
                "stop it first, or set EVERLOOP_DATA_DIR to another directory"
            ) from None
        lock_file.truncate(0)
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        self._lock_file = lock_file

    def stop(self) -> None:
        """Stops every started service, newest first, and releases the lock. Safe to call twice."""
        while self.processes:
            self.processes.pop().stop()
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                Path(self._lock_file.name).write_text("")
            self._lock_file.close()
            self._lock_file = None
