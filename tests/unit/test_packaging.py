"""The lock file pins every package with hashes, and never a known-malicious litellm."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MALICIOUS_LITELLM = {"1.82.7", "1.82.8"}


def _lock() -> list[dict[str, Any]]:
    return list(tomllib.loads((ROOT / "uv.lock").read_text())["package"])


def test_litellm_is_pinned_to_one_safe_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in project["project"]["dependencies"] if d.startswith("litellm")]
    assert len(pins) == 1 and "==" in pins[0]
    assert pins[0].split("==")[1] not in MALICIOUS_LITELLM
    [locked] = [p for p in _lock() if p["name"] == "litellm"]
    assert locked["version"] == pins[0].split("==")[1]


def test_every_locked_package_has_hashes() -> None:
    for package in _lock():
        if package.get("source", {}).get("editable") or package.get("source", {}).get("virtual"):
            continue
        artifacts = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        assert artifacts, package["name"]
        assert all(a.get("hash", "").startswith("sha256:") for a in artifacts), package["name"]
