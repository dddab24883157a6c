"""The compose file and Dockerfile cannot run here (no Docker engine): check what can be read, and
that every setting they (or the code) use is in docs/settings.md's table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS_DOC = ROOT / "docs" / "settings.md"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_every_part_of_the_system() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "temporal", "temporal-ui", "migrate", "api", "worker"} <= set(services)
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["api"]["command"] == ["api"]
    assert services["worker"]["command"] == ["worker"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["build"]["dockerfile"] == "deploy/Dockerfile"
    for name in ("api", "worker"):
        assert services[name]["image"] == services["migrate"]["image"]
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def _documented_settings() -> set[str]:
    """The variable names in the first column of docs/settings.md's table (a row may name several)."""
    names: set[str] = set()
    for line in SETTINGS_DOC.read_text().splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
    return names


def test_compose_sets_only_documented_settings() -> None:
    documented = _documented_settings()
    env = _compose()["services"]["api"]["environment"]
    assert {"DATABASE_URL", "REDIS_URL", "TEMPORAL_ADDRESS", "SECRETS_ENCRYPTION_KEY"} <= set(env)
    for name in env:
        assert name in documented, f"{name} is not in docs/settings.md's settings table"


def test_every_setting_the_code_reads_is_documented() -> None:
    source = (ROOT / "core" / "settings.py").read_text()
    read = set(re.findall(r'read\.\w+\(\s*"([A-Z][A-Z0-9_]*)"', source))
    # OAuth clients are read by prefix: `{prefix}_CLIENT_ID` and `{prefix}_CLIENT_SECRET`.
    for prefix in re.findall(r'_oauth_client\(\s*read,\s*"([A-Z][A-Z0-9_]*)"', source):
        read |= {f"{prefix}_CLIENT_ID", f"{prefix}_CLIENT_SECRET"}
    assert len(read) > 30, "the pattern no longer finds how core/settings.py reads variables"
    missing = sorted(read - _documented_settings())
    assert not missing, f"not in docs/settings.md's settings table: {', '.join(missing)}"


def test_dockerfile_copies_what_exists_and_runs_everloop() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, flags=re.MULTILINE):
        assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["everloop"]' in dockerfile
    assert 'CMD ["api"]' in dockerfile
    assert "--no-default-groups" in dockerfile  # no embedded stack or dev tools in the image
    assert re.search(r"^USER (?!root)", dockerfile, flags=re.MULTILINE)
