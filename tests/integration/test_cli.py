"""`everloop` commands run as processes of their own: bad configuration and a taken port stop them
with one clear line, before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        (["api"], {"DATABASE_URL": "", "AUTH_MODE": "none"}, "DATABASE_URL is not set"),
        (["worker"], {"DATABASE_URL": ""}, "DATABASE_URL is not set"),
        (["migrate"], {"DATABASE_URL": ""}, "DATABASE_URL is not set"),
        (["api"], {"AUTH_JWT_SECRET": ""}, "AUTH_MODE=full needs AUTH_JWT_SECRET"),
        (["api"], {"EVERLOOP_PORT": "http"}, "EVERLOOP_PORT: expected an integer"),
        (["dev"], {"AUTH_MODE": "none", "EVERLOOP_HOST": "0.0.0.0"}, "AUTH_MODE=none"),
    ],
)
def test_bad_configuration_stops_with_one_clear_line(
    command: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "everloop.cli", *command],
        env={"PATH": "/usr/bin:/bin", "EVERLOOP_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "everloop.cli", "services"],
            env={
                "PATH": "/usr/bin:/bin",
                "EVERLOOP_DATA_DIR": str(tmp_path),
                "EMBEDDED_POSTGRES_PORT": "0",
                "EMBEDDED_REDIS_PORT": str(port),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port} for the embedded Redis is in use" in result.stderr
    assert "EMBEDDED_REDIS_PORT" in result.stderr
    assert not (tmp_path / "postgres").exists()
