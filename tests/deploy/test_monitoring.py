"""The monitoring that ships in deploy/: alert and recording rules pass their
promtool unit tests, the scrape config is valid, and every Grafana panel,
alert and recording rule queries metrics the service really exports."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import act, add_agent, create, put_config, small_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMTOOL = shutil.which("promtool")
METRIC = re.compile(r"\b(router_[a-z_]+)")
# series Prometheus adds for histograms and counters
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


async def promtool(*args: str, cwd: Path) -> tuple[int, str]:
    assert PROMTOOL, "promtool is missing: scripts/bootstrap installs it (Debian prometheus)"
    proc = await asyncio.create_subprocess_exec(
        PROMTOOL, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_alert_rules_pass_their_unit_tests() -> None:
    rc, out = await promtool("test", "rules", "router-alerts.test.yml", cwd=DEPLOY / "prometheus")
    assert rc == 0, out
    assert "SUCCESS" in out


async def test_scrape_config_is_valid(tmp_path: Path) -> None:
    # the rule file path is the container's; point it at the real file here
    cfg = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    rules = DEPLOY / "prometheus" / "router-alerts.yml"
    (tmp_path / "prometheus.yml").write_text(
        cfg.replace("/etc/prometheus/rules/router-alerts.yml", str(rules))
    )
    rc, out = await promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert rc == 0, out


def rule_exprs(rules: str) -> list[tuple[str, str]]:
    """("alert X" or "record X", expr) pairs of a rules file (promtool has
    checked its syntax)."""
    doc = yaml.safe_load(rules)
    return [
        (f"alert {rule['alert']}" if "alert" in rule else f"record {rule['record']}", rule["expr"])
        for group in doc["groups"]
        for rule in group["rules"]
    ]


def queried_metrics() -> dict[str, set[str]]:
    """Metric names each dashboard panel and alert rule queries."""
    out: dict[str, set[str]] = {}
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "contact-router.json").read_text())
    assert len(dash["panels"]) >= 8
    for panel in dash["panels"]:
        names = {n for t in panel["targets"] for n in METRIC.findall(t["expr"])}
        assert names, f"panel {panel['title']!r} queries no router metric"
        out[f"panel {panel['title']}"] = names
    for var in dash["templating"]["list"]:
        out[f"variable {var['name']}"] = set(METRIC.findall(var["query"]))
    for rule, expr in rule_exprs((DEPLOY / "prometheus" / "router-alerts.yml").read_text()):
        out[rule] = set(METRIC.findall(expr))
    return out


def base_name(series: str, exported: set[str]) -> str:
    for suffix in SUFFIXES:
        if series.endswith(suffix) and series[: -len(suffix)] in exported:
            return series[: -len(suffix)]
    return series


# Exported only by a service with a history archive (ROUTER_ARCHIVE_URL):
# tests/archive/test_events_archive.py reads it from such a service's /metrics.
ONLY_WITH_ARCHIVE = {"router_archive_backlog_events", "router_archive_gaps_total"}


async def test_dashboard_and_alerts_query_exported_metrics(api: Any, ws: str) -> None:
    cfg = small_config()
    cfg["sla_policies"] = {"std": {"answer": 600}}
    cfg["defaults"]["sla"] = "std"
    await put_config(api, ws, cfg)
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1", handoff={"bot": "helpbot"})  # a bot's hand-off, served
    await act(api, ws, "c1", "accept", agent_id="a1")
    await act(api, ws, "c1", "complete", agent_id="a1")
    text = await (await api.get("/metrics")).text()
    exported = {f.name for f in text_string_to_metric_families(text)}
    missing = {}
    for where, names in queried_metrics().items():
        unknown = {n for n in names if base_name(n, exported) not in exported} - ONLY_WITH_ARCHIVE
        if unknown:
            missing[where] = unknown
    assert not missing, missing
    queried = queried_metrics()
    assert len([k for k in queried if k.startswith("alert")]) == 9
    # CSAT and NPS (5), the hand-offs' changed-intent share (2)
    assert len([k for k in queried if k.startswith("record")]) == 7
    assert len(queried) >= 32  # 16 panels, a variable, 9 alerts, 7 recording rules
