"""deploy/ cannot run here (no container engine): check what can be read. The compose file and the
Kubernetes manifests run the same commands with the same settings, every setting they (or the code)
use is in docs/settings.md's table, and every pod is locked down. The real tools (checkov, the
Compose Specification's schema, Kubernetes' schemas) run in test_deploy_checkov.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from core.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SETTINGS_DOC = ROOT / "docs" / "settings.md"
APPS = ("migrate", "api", "worker")  # the services that run the everloop image
# What the pods read from the Secret everloop-secrets (the rest comes from the ConfigMap).
SECRET_SETTINGS = {
    "DATABASE_URL",
    "REDIS_URL",
    "SECRETS_ENCRYPTION_KEY",
    "AUTH_JWT_SECRET",
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "METRICS_TOKEN",
}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _manifests(*, with_job: bool = True) -> list[dict[str, Any]]:
    """Every Kubernetes object in deploy/k8s (the kustomization is not one)."""
    objects: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml" or (path.name == "migrate-job.yaml" and not with_job):
            continue
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def _workload(kind: str, name: str) -> dict[str, Any]:
    found = [m for m in _manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def _containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, pod spec, container) of every Deployment and Job."""
    for manifest in _manifests():
        if manifest["kind"] in ("Deployment", "Job"):
            pod = manifest["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield manifest["metadata"]["name"], pod, container


def _config_map() -> dict[str, str]:
    data = _workload("ConfigMap", "everloop-config")["data"]
    assert isinstance(data, dict)
    return data


def _k8s_settings(container: dict[str, Any]) -> set[str]:
    """The variables a container gets: its ConfigMap's keys and its own `env` names."""
    names = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == "everloop-config"
        names |= set(_config_map())
    return names


def test_compose_has_every_part_of_the_system() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "temporal", "temporal-ui", "migrate", "api", "worker", "lb"} <= set(services)
    # Temporal's server on PostgreSQL, not the dev server (`temporal server start-dev`).
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["api"]["command"] == ["api"]
    assert services["worker"]["command"] == ["worker"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        assert services[name]["image"] == services["migrate"]["image"]
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_scales_api_and_workers() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    assert "replicas: ${API_REPLICAS:-2}" in text
    assert "replicas: ${WORKER_REPLICAS:-2}" in text
    services = _compose()["services"]
    # `--scale api=N` works because no API replica publishes a port: the load balancer is the way in,
    # and it finds every replica by the service's name.
    assert "ports" not in services["api"] and "ports" not in services["worker"]
    assert services["lb"]["ports"] == ["${EVERLOOP_HTTP_PORT:-8000}:8080"]
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert re.search(r"server api:8000 resolve\b", nginx)
    assert "proxy_buffering off;" in nginx  # SSE frames pass as they come
    # Prometheus scrapes the replicas directly: the public way in does not serve /metrics.
    assert re.search(r"location = /metrics \{\s*return 404;\s*\}", nginx)
    # The API believes forwarded headers from the load balancer's fixed address only.
    lb_address = services["lb"]["networks"]["default"]["ipv4_address"]
    assert services["api"]["environment"]["EVERLOOP_TRUSTED_PROXIES"] == lb_address


def test_every_compose_service_is_checked_limited_and_unprivileged() -> None:
    for name, service in _compose()["services"].items():
        if name == "migrate":
            assert service["healthcheck"] == {"disable": True}  # a one-shot job
        else:
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        limits = service["deploy"]["resources"]["limits"]
        assert limits["cpus"] and limits["memory"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service.get("user") != "root", name
    services = _compose()["services"]
    for name in (*APPS, "lb", "redis"):
        assert services[name]["read_only"] is True, name
    assert services["api"]["healthcheck"]["test"] == ["CMD", "python", "/app/deploy/healthcheck.py", "api"]
    assert services["worker"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "/app/deploy/healthcheck.py",
        "worker",
    ]


def _documented_settings() -> set[str]:
    """The variable names in the first column of docs/settings.md's table (a row may name several)."""
    names: set[str] = set()
    for line in SETTINGS_DOC.read_text().splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
    return names


def test_compose_sets_only_documented_settings() -> None:
    documented = _documented_settings()
    services = _compose()["services"]
    env = services["api"]["environment"]
    assert {"DATABASE_URL", "REDIS_URL", "TEMPORAL_ADDRESS", "SECRETS_ENCRYPTION_KEY"} <= set(env)
    for name in APPS:
        assert services[name]["environment"] == env, f"{name} has other settings than the API"
    for name in env:
        assert name in documented, f"{name} is not in docs/settings.md's settings table"


def test_compose_variables_are_in_the_env_example() -> None:
    """Every `${VAR}` the compose file reads is one deploy/.env.example shows (set or commented)."""
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (DEPLOY / "compose.yaml").read_text()))
    example = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", (DEPLOY / ".env.example").read_text(), re.MULTILINE))
    assert used >= {"API_REPLICAS", "WORKER_REPLICAS", "POSTGRES_PASSWORD"}
    assert not used - example, f"not in deploy/.env.example: {sorted(used - example)}"


def test_kubernetes_sets_only_documented_settings_and_no_secret_values() -> None:
    documented = _documented_settings()
    for name, _, container in _containers():
        for setting in _k8s_settings(container):
            assert setting in documented, f"{name}: {setting} is not in docs/settings.md's settings table"
        for item in container.get("env", []):
            if item["name"] in SECRET_SETTINGS:
                # From the Secret by reference, never a value written in a manifest.
                assert "value" not in item, f"{name}: {item['name']} has a literal value"
                assert item["valueFrom"]["secretKeyRef"]["name"] == "everloop-secrets"
    assert not SECRET_SETTINGS & set(_config_map()), "a secret in the ConfigMap"
    assert not [m for m in _manifests() if m["kind"] == "Secret"], "secrets are made outside the manifests"


def test_compose_and_kubernetes_agree() -> None:
    """Same commands, same settings, the same health check for the workers."""
    services = _compose()["services"]
    workloads = {"api": "everloop-api", "worker": "everloop-worker", "migrate": "everloop-migrate"}
    containers = {name: container for name, _, container in _containers()}
    for service, workload in workloads.items():
        assert containers[workload]["args"] == services[service]["command"], service
    compose_settings = set(services["api"]["environment"])
    for workload in ("everloop-api", "everloop-worker"):
        assert _k8s_settings(containers[workload]) == compose_settings, workload
    # The migration needs the database only; everything else it gets is shared config.
    assert "DATABASE_URL" in _k8s_settings(containers["everloop-migrate"])
    # Temporal's word on a worker is a signal (compose's healthcheck, Kubernetes' readiness), never
    # a restart: liveness asks the process (its liveness file), as does start-up.
    worker = containers["everloop-worker"]
    worker_check = services["worker"]["healthcheck"]["test"][1:]
    assert worker["readinessProbe"]["exec"]["command"] == worker_check
    live = ["python", "/app/deploy/healthcheck.py", "worker", "--live"]
    assert worker["livenessProbe"]["exec"]["command"] == live
    assert worker["startupProbe"]["exec"]["command"] == live
    assert _config_map()["WORKER_LIVENESS_FILE"].startswith("/tmp/")  # the pod's writable memory
    assert containers["everloop-api"]["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert containers["everloop-api"]["livenessProbe"]["httpGet"]["path"] == "/health"


def test_kubernetes_pods_are_locked_down_and_pinned() -> None:
    images = set()
    for name, pod, container in _containers():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert {"/tmp"} == {mount["mountPath"] for mount in container["volumeMounts"]}, name
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
        assert re.fullmatch(r"[\w./-]+@sha256:[0-9a-f]{64}", container["image"]), name
        images.add(container["image"])
        if name != "everloop-migrate":
            assert "livenessProbe" in container and "startupProbe" in container, name
    assert len(images) == 1, "every workload runs the same image"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (pin,) = kustomization["images"]
    assert images == {f"{pin['name']}@{pin['digest']}"}


def test_kubernetes_has_every_part() -> None:
    kinds = {(m["kind"], m["metadata"]["name"]) for m in _manifests()}
    assert {
        ("Namespace", "everloop"),
        ("ServiceAccount", "everloop"),
        ("ConfigMap", "everloop-config"),
        ("Deployment", "everloop-api"),
        ("Service", "everloop-api"),
        ("PodDisruptionBudget", "everloop-api"),
        ("HorizontalPodAutoscaler", "everloop-api"),
        ("Deployment", "everloop-worker"),
        ("PodDisruptionBudget", "everloop-worker"),
        ("Job", "everloop-migrate"),
    } <= kinds
    for manifest in _manifests():
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == "everloop", manifest["metadata"]["name"]
    # The HPA owns the API's replica count: the Deployment must not reset it on every apply.
    assert "replicas" not in _workload("Deployment", "everloop-api")["spec"]
    hpa = _workload("HorizontalPodAutoscaler", "everloop-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "everloop-api"
    # `kubectl apply -k` applies everything but the migration Job, which runs first, on its own.
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "migrate-job.yaml"}
    assert listed == on_disk


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
    assert "COPY deploy/healthcheck.py deploy/" in dockerfile  # where compose and k8s call it
    assert 'CMD ["python", "/app/deploy/healthcheck.py"]' in dockerfile


def test_production_defaults_are_closed() -> None:
    """Registration closed, forwarded headers believed from the ingress controller only, and the
    API's port open to it and Prometheus only."""
    compose_env = _compose()["services"]["api"]["environment"]
    assert compose_env["AUTH_REGISTRATION_OPEN"] == "${AUTH_REGISTRATION_OPEN:-false}"
    assert _config_map()["AUTH_REGISTRATION_OPEN"] == "false"
    assert "AUTH_REGISTRATION_OPEN=false" in (DEPLOY / ".env.example").read_text()
    # A placeholder that matches no pod, never a whole private range.
    assert _config_map()["EVERLOOP_TRUSTED_PROXIES"] == "192.0.2.0/24"
    policies = [m for m in _manifests() if m["kind"] == "NetworkPolicy"]
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            peers = rule["from"]  # no rule admits the whole cluster
            assert peers and all("namespaceSelector" in p and "podSelector" in p for p in peers), policy
    api_policy = next(p for p in policies if p["metadata"]["name"] == "everloop-api-ingress")
    admitted = [p["podSelector"]["matchLabels"] for p in api_policy["spec"]["ingress"][0]["from"]]
    assert {"app.kubernetes.io/name": "ingress-nginx"} in admitted


def test_stops_and_starts_are_clean() -> None:
    """PostgreSQL is healthy over TCP (not the init's socket-only server); the API leaves the
    Service before SIGTERM and bounds its own shutdown below the grace period."""
    test = _compose()["services"]["postgres"]["healthcheck"]["test"]
    assert "pg_isready -h 127.0.0.1 " in test[1]
    api = _workload("Deployment", "everloop-api")["spec"]["template"]["spec"]
    (container,) = api["containers"]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert 5 + load_settings({}).api_graceful_shutdown_s < api["terminationGracePeriodSeconds"]
