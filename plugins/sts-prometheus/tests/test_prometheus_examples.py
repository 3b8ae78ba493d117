"""The shipped examples: the alert rules pass promtool and their own unit tests, and the alert
rules and the Grafana dashboard use only metrics the plugin exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sts.plugin import Health
from sts_prometheus.config import Settings
from sts_prometheus.metrics import build_metrics

PLUGIN = Path(__file__).resolve().parents[1]
ALERTS = PLUGIN / "examples" / "alerts.yml"
ALERTS_TEST = PLUGIN / "tests" / "alerts_test.yml"
DASHBOARD = PLUGIN / "examples" / "grafana-dashboard.json"
NO_PROMTOOL = "promtool is not installed (Debian: apt install prometheus)"
_METRIC = re.compile(r"\b(sts_[a-z_]+)")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported_names() -> set[str]:
    """Every series name the plugin can export (process metrics aside)."""
    health = Health(running=True, scheduler_id="x", roles=("worker",), runs_in_flight=0,
                    beats={"worker": datetime(2026, 1, 1, tzinfo=UTC)}, backend_unavailable=False)
    metrics = build_metrics(Settings(process_metrics=False), health=lambda: health, backend="memory", version="0")
    return {family.name + suffix for family in metrics.registry.collect() for suffix in _SUFFIXES[family.type]}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=PLUGIN)


def test_the_exported_names_follow_the_naming_the_readme_documents() -> None:
    names = exported_names()
    assert "sts_runs_total" in names and "sts_run_duration_seconds_bucket" in names
    assert all(name.startswith("sts_") for name in names)
    readme = (PLUGIN / "README.md").read_text()
    for name in names:
        family = re.sub(r"_(bucket|count|sum)$", "", name)
        assert f"`{family}`" in readme, f"{family} is not documented in README.md"


@pytest.mark.skipif(shutil.which("promtool") is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_alert_rules() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason=NO_PROMTOOL)
def test_the_alert_rules_fire_as_their_unit_tests_expect() -> None:
    tested = promtool("test", "rules", str(ALERTS_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_alert_rules_use_only_exported_metrics() -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    names = exported_names()
    used = {name for rule in rules for name in _METRIC.findall(rule["expr"])}
    assert used and used <= names, used - names
    titles = {rule["alert"] for rule in rules}
    assert {"STSTaskFailing", "STSTaskNotSucceeding", "STSHeartbeatStale", "STSQueueBacklogGrowing",
            "STSHighLateness", "STSPluginLoadErrors", "STSTargetDown"} <= titles


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [panel for panel in found if panel["type"] != "row"]


def test_the_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["targets"] and all(target["expr"] for target in panel["targets"])


def test_every_dashboard_query_uses_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exported_names()
    queries = [target["expr"] for panel in panels(dashboard) for target in panel["targets"]]
    queries += [variable["definition"] for variable in dashboard["templating"]["list"] if "definition" in variable]
    used = {name for query in queries for name in _METRIC.findall(query)}
    assert used <= names, used - names
    wanted = {"sts_runs_total", "sts_run_duration_seconds_bucket", "sts_run_lateness_seconds_bucket",
              "sts_runs_in_flight", "sts_queue_runs", "sts_task_last_success_timestamp_seconds",
              "sts_scheduler_heartbeat_timestamp_seconds"}
    assert wanted <= used, wanted - used
