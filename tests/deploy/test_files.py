"""The container, compose and Kubernetes files in deploy/ agree with the service:
every variable they set is one the code reads, probes hit the open health routes,
grace periods cover the drain and the timer hand-back, Redis is new enough for
the routing library, secrets come from Secrets, and every mounted file exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from router.api.middlewares import OPEN_PATHS
from sla.timers import HANDBACK_RETRY, STOP_GRACE

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SOURCES = {"ROUTER_": ROOT / "router", "REDIS_URL": ROOT / "router", "LT_": ROOT / "loadtest"}


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # type: ignore[no-any-return]


def k8s() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((DEPLOY / "k8s" / "router.yaml").read_text())
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
    unknown = sorted({n for n in names if not read_by_code(n) and not n.startswith("GF_")})
    assert not unknown, f"set in deploy/ but read nowhere: {unknown}"


def test_probes_and_ports_match_the_service() -> None:
    c = container()
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= OPEN_PATHS  # probes carry no token
    assert c["ports"][0]["containerPort"] == 8080
    svc = k8s()["Service"]
    assert svc["spec"]["ports"][0]["targetPort"] == c["ports"][0]["name"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "ROUTER_HOST=0.0.0.0" in dockerfile and "ROUTER_PORT=8080" in dockerfile
    assert "EXPOSE 8080" in dockerfile


def test_grace_periods_cover_the_drain_and_the_timer_hand_back() -> None:
    pod = k8s()["Deployment"]["spec"]["template"]["spec"]
    pre_stop = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain_seconds()
    grace = compose()["services"]["router"]["stop_grace_period"]
    assert float(grace.rstrip("s")) >= drain_seconds()


def test_redis_is_new_enough_for_the_routing_library() -> None:
    image = compose()["services"]["redis"]["image"]
    major = int(image.split(":")[1].split(".")[0])
    assert major >= 7, "FCALL and FUNCTION LOAD need Redis 7"


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
