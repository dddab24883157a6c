"""deploy/ through real validators, since no container engine runs here: checkov's policies on the
Dockerfile and the Kubernetes manifests (and its secrets scan on all of deploy/), the compose file
against the Compose Specification's JSON schema (checkov has no compose framework), and the
manifests against Kubernetes' own schemas, strictly (an unknown field is an error). Each tool also
gets a broken input beside ours, so the test shows it can fail.

The tools live in .tools/checkov, made by `make checkov` (a prerequisite of `make test`) from the
hash-pinned tools/checkov-requirements.txt: checkov's pins conflict with litellm's in uv.lock."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
TOOLS = ROOT / ".tools" / "checkov" / "bin"
KUBERNETES_VERSION = "1.31.0"  # the oldest minor version still supported upstream when written

# Checks that do not apply, each skipped in the manifest itself (a `checkov.io/skipN` annotation
# that says why); a new skip must be added here too, on purpose.
ALLOWED_SKIPS = {
    # The settings are environment variables only (core/settings.py reads nothing else): the
    # secrets reach the process as env from the Secret, never as a value in a manifest.
    ("CKV_K8S_35", "api.yaml"),
    ("CKV_K8S_35", "worker.yaml"),
    ("CKV_K8S_35", "migrate-job.yaml"),
}

BROKEN_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      containers:
        - name: broken
          image: example/broken:latest
          securityContext: {privileged: true}
"""
BROKEN_DOCKERFILE = "FROM python:latest\nRUN pip install everloop\n"


def _tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make checkov` (`make test` does it first)")
    return str(path)


def _run(args: list[str], *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env, check=False)


def _checkov_reports(tmp_path: Path) -> list[dict[str, Any]]:
    """One run over a copy of deploy/ and a broken directory beside it (with two `--directory`
    options checkov prints two JSON documents, and takes twice as long)."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "deployment.yaml").write_text(BROKEN_DEPLOYMENT)
    (broken / "Dockerfile").write_text(BROKEN_DOCKERFILE)
    # An AWS access key id in AWS's own documented example form, split so no scanner of this
    # repository mistakes the test for a leak.
    (broken / "settings.yaml").write_text(f"aws_access_key_id: {'AKIA' + 'IOSFODNN7EXAMPLE'}\n")
    env = {
        **os.environ,
        # Offline: no guideline download from the vendor's platform, no PyPI update check.
        "BC_SKIP_MAPPING": "TRUE",
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
    }
    result = _run(
        [
            _tool("checkov"),
            *("--directory", str(tmp_path)),
            *("--framework", "dockerfile", "kubernetes", "secrets"),
            # --compact: no code blocks in the report (9 MB of JSON without it).
            *("--output", "json", "--compact", "--skip-download", "--soft-fail"),
        ],
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def test_checkov_passes_every_check_on_deploy(tmp_path: Path) -> None:
    reports = {report["check_type"]: report for report in _checkov_reports(tmp_path)}
    broken = tmp_path / "broken"
    assert set(reports) == {"dockerfile", "kubernetes", "secrets"}, set(reports)
    failed: list[tuple[str, str]] = []
    caught: dict[str, set[str]] = {}
    skipped: set[tuple[str, str]] = set()
    for kind, report in reports.items():
        assert report["summary"]["parsing_errors"] == 0, kind
        results = report["results"]
        for check in results["failed_checks"]:
            path = Path(check["file_abs_path"])
            if path.is_relative_to(broken):
                caught.setdefault(kind, set()).add(check["check_id"])
            else:
                failed.append((check["check_id"], f"{path.relative_to(tmp_path)}: {check['check_name']}"))
        skipped |= {(c["check_id"], Path(c["file_abs_path"]).name) for c in results["skipped_checks"]}
    assert not failed, "checkov failed:\n" + "\n".join(f"{i} {what}" for i, what in failed)
    assert skipped == ALLOWED_SKIPS
    # It read ours: the image and every workload, where the checks that matter most passed.
    passed = {
        (c["check_id"], c["resource"] if kind == "kubernetes" else Path(c["file_abs_path"]).name)
        for kind, report in reports.items()
        for c in report["results"]["passed_checks"]
        if not Path(c["file_abs_path"]).is_relative_to(broken)
    }
    workloads = ("Deployment.everloop.everloop-api", "Deployment.everloop.everloop-worker")
    for workload in (*workloads, "Job.everloop.everloop-migrate"):
        for check in ("CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_37", "CKV_K8S_43"):
            assert (check, workload) in passed, (check, workload)
    for workload in workloads:
        assert ("CKV_K8S_8", workload) in passed, workload  # a liveness probe
    assert {("CKV_DOCKER_2", "Dockerfile"), ("CKV_DOCKER_3", "Dockerfile")} <= passed  # HEALTHCHECK, USER
    # ...and it can fail: the broken inputs beside ours were caught.
    assert {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_43"} <= caught["kubernetes"]
    assert {"CKV_DOCKER_2", "CKV_DOCKER_3", "CKV_DOCKER_7"} <= caught["dockerfile"]
    assert caught["secrets"]


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
    `${VAR:?error}`, `${VAR?error}`, and `$$` for a literal `$`."""

    def value(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        if op == ":-":
            return current or arg
        if op == "-":
            return arg if current is None else current
        if op in (":?", "?"):
            assert current if op == ":?" else current is not None, f"compose would stop: {name}: {arg}"
            return current or ""
        return current or ""

    pattern = r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
    return re.sub(pattern, value, text)


def _env_example() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    # What the example leaves for the operator to generate.
    return {**env, "SECRETS_ENCRYPTION_KEY": "a" * 44, "AUTH_JWT_SECRET": "b" * 32}


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    """What `docker compose config` would check: interpolated with deploy/.env.example's values,
    then validated against the Compose Specification's schema (vendored in check-jsonschema)."""
    text = _interpolate((DEPLOY / "compose.yaml").read_text(), _env_example())
    assert "${" not in text
    ours = yaml.safe_load(text)  # YAML anchors and merge keys resolved, as compose does
    assert ours["services"]["api"]["deploy"]["replicas"] == 2
    broken = json.loads(json.dumps(ours))
    broken["services"]["worker"]["healtcheck"] = broken["services"]["worker"].pop("healthcheck")
    (tmp_path / "compose.json").write_text(json.dumps(ours))
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    check = [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    result = _run([*check, str(tmp_path / "compose.json")])
    assert result.returncode == 0, result.stdout + result.stderr
    result = _run([*check, str(tmp_path / "broken.json")])
    assert result.returncode == 1
    assert "'healtcheck' was unexpected" in result.stdout, result.stdout


def test_kubernetes_manifests_follow_the_kubernetes_schemas(tmp_path: Path) -> None:
    manifests = sorted(str(p) for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    broken = tmp_path / "broken.yaml"
    worker = (K8S / "worker.yaml").read_text()
    broken.write_text(worker.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem", 1))
    validate = [_tool("kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSION]
    result = _run([*validate, *manifests])
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(manifests) >= 5
    result = _run([*validate, str(broken)])
    assert result.returncode == 1
    assert "readOnlyRootFileSystem" in result.stdout + result.stderr
