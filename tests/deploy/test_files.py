"""The container, compose and Kubernetes files in deploy/ agree with the service:
every variable they set is one the code reads, probes hit the open health routes,
grace periods cover the drain and the timer hand-back, Redis is new enough for
the routing library, secrets come from Secrets, every mounted file exists, the
image installs what uv.lock pins, nothing is published beyond loopback by
compose, the compose file passes the Compose schema and the Kubernetes
manifests the Kubernetes schema (strict)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.api.middlewares import OPEN_PATHS
from sla.timers import HANDBACK_RETRY, STOP_GRACE

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SOURCES = {"ROUTER_": ROOT / "router", "REDIS_URL": ROOT / "router", "LT_": ROOT / "loadtest"}


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # type: ignore[no-any-return]


def k8s(name: str = "router.yaml") -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((DEPLOY / "k8s" / name).read_text())
    return {d["kind"]: d for d in docs}


def drain_seconds() -> float:
    """The HTTP drain `router serve` gives requests in flight, then the timer hand-back."""
    cli = (ROOT / "router" / "cli" / "main.py").read_text()
    m = re.search(r"shutdown_timeout=(\d+)", cli)
    assert m, "router/cli/main.py passes shutdown_timeout to run_app"
    return float(m.group(1)) + STOP_GRACE + HANDBACK_RETRY


def read_by_code(name: str) -> bool:
    for prefix, where in SOURCES.items():
        if name.startswith(prefix):
            return any(f'"{name}"' in p.read_text() for p in where.rglob("*.py"))
    return False


def container() -> dict[str, Any]:
    return k8s()["Deployment"]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_every_variable_set_is_read_by_the_code() -> None:
    names = [e["name"] for e in container()["env"]]
    for svc in compose()["services"].values():
        names += list((svc.get("environment") or {}).keys())
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    names += re.findall(r"\b((?:ROUTER|LT)_[A-Z_]+)=", dockerfile)
    assert "REDIS_URL" in names and "ROUTER_TOKENS_FILE" in names
    # GF_ and POSTGRES_: Grafana's and the PostgreSQL image's own settings
    images = ("GF_", "POSTGRES_")
    unknown = sorted({n for n in names if not read_by_code(n) and not n.startswith(images)})
    assert not unknown, f"set in deploy/ but read nowhere: {unknown}"


def test_probes_and_ports_match_the_service() -> None:
    c = container()
    # `router health` (router/cli/health.py) asks /readyz with --ready, else /healthz
    assert c["readinessProbe"]["exec"]["command"] == ["python", "-m", "router", "health", "--ready"]
    assert c["livenessProbe"]["exec"]["command"] == ["python", "-m", "router", "health"]
    health = (ROOT / "router" / "cli" / "health.py").read_text()
    assert "'readyz' if ready else 'healthz'" in health
    assert {"/readyz", "/healthz"} <= OPEN_PATHS  # probes carry no token
    assert c["ports"][0]["containerPort"] == 8080
    svc = k8s()["Service"]
    assert svc["spec"]["ports"][0]["targetPort"] == c["ports"][0]["name"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "ROUTER_HOST=0.0.0.0" in dockerfile and "ROUTER_PORT=8080" in dockerfile
    assert "EXPOSE 8080" in dockerfile


def test_grace_periods_cover_the_drain_and_the_timer_hand_back() -> None:
    pod = k8s()["Deployment"]["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"  # not the `sleep` action: it needs Kubernetes 1.30
    pre_stop = float(command[1])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain_seconds()
    grace = compose()["services"]["router"]["stop_grace_period"]
    assert float(grace.rstrip("s")) >= drain_seconds()


def redis_images() -> list[str]:
    images = [s["image"] for s in compose()["services"].values() if "redis" in s.get("image", "")]
    sts = k8s("redis-sentinel.yaml")["StatefulSet"]["spec"]["template"]["spec"]
    return images + [c["image"] for c in sts["containers"]]


def test_redis_is_new_enough_for_the_routing_library() -> None:
    for image in redis_images():
        major = int(image.split(":")[1].split(".")[0])
        assert major >= 7, f"{image}: FCALL and FUNCTION LOAD need Redis 7"


def test_compose_runs_sentinel_with_the_write_guarantee_on_loopback_ports() -> None:
    services = compose()["services"]
    router = services["router"]["environment"]
    assert router["REDIS_URL"].startswith("redis+sentinel://")
    assert router["ROUTER_REDIS_WAIT_REPLICAS"] == "1"
    sentinels = [name for name in services if name.startswith("sentinel-")]
    assert len(sentinels) == 3
    for name in sentinels:
        assert f"{name}:26379" in router["REDIS_URL"]
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published), published


def test_the_image_installs_what_the_lock_pins() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "uv export --frozen --no-dev" in dockerfile
    assert "--require-hashes" in dockerfile and "pip install --no-deps ." in dockerfile
    assert "uv export --frozen --only-group loadtest" in dockerfile
    assert "HEALTHCHECK" in dockerfile and '"router", "health"' in dockerfile
    assert "8080" not in dockerfile.split("HEALTHCHECK", 1)[1].split("\n", 1)[0]
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignored[0] == "*"  # everything out, then the few things the image needs back
    assert {"!router/", "!sla/", "!uv.lock", "!pyproject.toml"} <= set(ignored)


@pytest.mark.parametrize("version", ["1.29.0", None])
@pytest.mark.parametrize("manifest", sorted(p.name for p in (DEPLOY / "k8s").glob("*.yaml")))
def test_kubernetes_manifests_pass_the_schema(manifest: str, version: str | None) -> None:
    """Strict: an unknown or misplaced field fails too (kubernetes-validate ships
    the schemas; None is the newest it knows)."""
    import kubernetes_validate

    kinds = []
    for doc in yaml.safe_load_all((DEPLOY / "k8s" / manifest).read_text()):
        if not doc or "apiVersion" not in doc:
            continue  # the Prometheus scrape snippet is not a Kubernetes object
        v = version or kubernetes_validate.latest_version()
        kubernetes_validate.validate(doc, v, strict=True)
        kinds.append(doc["kind"])
    if manifest == "router.yaml":
        assert {"Deployment", "HorizontalPodAutoscaler", "NetworkPolicy"} <= set(kinds)
        pod = k8s()["Deployment"]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False


def test_secrets_come_from_secrets_and_the_pod_runs_unprivileged() -> None:
    env = {e["name"]: e for e in container()["env"]}
    for name in ("REDIS_URL", "ROUTER_JWT_SECRET"):
        assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"]
    pod = k8s()["Deployment"]["spec"]["template"]["spec"]
    uid = re.search(r"^USER (\d+)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert uid and int(uid.group(1)) == pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True
    assert (
        k8s()["PodDisruptionBudget"]["spec"]["minAvailable"]
        < k8s()["Deployment"]["spec"]["replicas"]
    )


def test_every_mounted_and_copied_file_exists() -> None:
    for svc in compose()["services"].values():
        for vol in svc.get("volumes", []):
            src, dst = vol.split(":")[:2]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), vol
                if dst.startswith("/etc/prometheus/rules/"):  # where prometheus.yml looks
                    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
                    assert dst in prom["rule_files"]
                if dst == "/var/lib/grafana/dashboards":
                    prov = yaml.safe_load(
                        (DEPLOY / "grafana/provisioning/dashboards/contact-router.yml").read_text()
                    )
                    assert prov["providers"][0]["options"]["path"] == dst
    for src in re.findall(r"^COPY (\S+)", (DEPLOY / "Dockerfile").read_text(), re.M):
        assert (ROOT / src).exists(), src
    for build in (s.get("build") for s in compose()["services"].values()):
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).exists()


def test_compose_file_passes_the_compose_schema(tmp_path: Path) -> None:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian's package) is installed by scripts/bootstrap"

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, "-f", str(path), "config", "-q"],
            cwd=path.parent, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    ok = check(DEPLOY / "compose.yaml")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # the same check refuses a key the schema does not know
    broken = compose()
    broken["services"]["router"]["restart_policy"] = "always"
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    bad = check(tmp_path / "compose.yaml")
    assert bad.returncode != 0 and "restart_policy" in bad.stderr, bad.stderr
