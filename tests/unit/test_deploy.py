"""The compose file and Dockerfile cannot run here (no Docker engine): check what can be read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


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


def test_compose_sets_only_documented_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    env = _compose()["services"]["api"]["environment"]
    assert {"DATABASE_URL", "REDIS_URL", "TEMPORAL_ADDRESS", "SECRETS_ENCRYPTION_KEY"} <= set(env)
    for name in env:
        assert f"`{name}`" in readme, f"{name} is not in the README's settings table"


def test_dockerfile_copies_what_exists_and_runs_everloop() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, flags=re.MULTILINE):
        assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["everloop"]' in dockerfile
    assert 'CMD ["api"]' in dockerfile
    assert "--no-default-groups" in dockerfile  # no embedded stack or dev tools in the image
    assert re.search(r"^USER (?!root)", dockerfile, flags=re.MULTILINE)
