"""deploy/prometheus and deploy/grafana: the alert rules fire when they should (promtool's
own rule tests), and every metric and label the rules and the dashboard name is one the
code registers — a renamed metric must fail here, not silently blank a panel or an alert."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from esg_leads.connectors.metrics import PrometheusListener
from esg_leads.flows.crm_sync import CrmMetrics
from tests.kafka_helpers import require_tool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "esg-leads.json"
#: Labels Prometheus attaches to every scraped series, and the histogram bucket label.
SCRAPE_LABELS = {"job", "instance", "le"}
#: Series Prometheus itself makes.
PROMETHEUS_SERIES = {"up"}
NAME = re.compile(r"\b((?:esg_leads|process|python)_[a-z0-9_]+|up)\b(\s*\{[^}]*\})?")


def registered() -> dict[str, set[str]]:
    """Every sample name our processes can expose -> its label names."""
    listener, crm = PrometheusListener(), CrmMetrics()
    names: dict[str, set[str]] = {name: set() for name in PROMETHEUS_SERIES}
    for registry in (listener.registry, crm.registry):
        for family in registry.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                        "gauge": ("",), "info": ("_info",)}.get(family.type, ("",))
            labels = set(family.samples[0].labels) if family.samples else set()
            for metric in registry._names_to_collectors.values():  # labelnames, even unused
                if getattr(metric, "_name", None) == family.name:
                    labels |= set(metric._labelnames)
            for suffix in suffixes:
                names[family.name + suffix] = labels
    return names


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert rule and every dashboard panel target."""
    found = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", rule["expr"]))
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            found.append((f"panel {panel['title']!r}", target["expr"]))
    return found


def test_promtool_checks_the_rules_and_their_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=RULES.parent,
                            capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_rule_has_a_unit_test_that_expects_it_to_fire() -> None:
    rules = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load((RULES.parent / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    assert rules - fired == set(), "rules never shown to fire"
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["runbook"]


@pytest.mark.parametrize(("where", "expr"), expressions())
def test_rules_and_panels_name_only_metrics_and_labels_the_code_registers(where: str,
                                                                           expr: str) -> None:
    known = registered()
    for match in NAME.finditer(expr):
        name, matchers = match.group(1), match.group(2) or ""
        assert name in known, f"{where}: {name} is not a metric the code registers"
        for label in re.findall(r"([a-z_]+)\s*=~?", matchers):
            assert label in known[name] | SCRAPE_LABELS, f"{where}: {name} has no label {label}"


def test_the_checker_catches_a_renamed_metric_and_a_wrong_label() -> None:
    known = registered()
    assert "esg_leads_dead_letters_total" in known and "reason" in known[
        "esg_leads_dead_letters_total"]
    assert "esg_leads_dead_letter_total" not in known
    assert "tenant" not in known["esg_leads_dead_letters_total"]


def test_the_dashboard_uses_the_provisioned_datasource_and_a_clean_grid() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (source,) = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    ids, cells = set(), set()
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        assert panel["datasource"]["uid"] == source["uid"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "esg-leads.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_app_exposes_process_and_gc_metrics_and_promtool_accepts_them() -> None:
    listener = PrometheusListener()
    listener.on_counts({("in", "investor.engagements"): 3})
    listener.on_observations([("lead_latency", "ingest", 0.2)])
    text = generate_latest(listener.registry)
    for name in (b"process_cpu_seconds_total", b"process_resident_memory_bytes",
                 b"python_gc_collections_total", b"esg_leads_gc_frozen_objects"):
        assert name in text
    promtool = require_tool("promtool")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
