"""The installed plugin as a user meets it: ``sts plugins`` and ``sts validate`` in a new process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REPOSITORY = Path(__file__).resolve().parents[3]  # the example tasks use examples.demo_jobs from here
STS = Path(sys.executable).with_name("sts")
SECRET = "https://hooks.slack.com/services/T0001/B0001/Zx9SecretToken"


def sts(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith(("STS_", "SLACK_"))}
    environ.update(env)
    return subprocess.run([str(STS), *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)


def test_sts_plugins_lists_slack(tmp_path: Path):
    result = sts("plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("slack ")]
    assert "sts-slack" in line and "0.1.0" in line
    assert "off in config" in line  # installed, not switched on by default
    assert "alert_options:slack" in line


def test_sts_validate_accepts_the_example_task_file_and_config():
    result = sts("validate", "--config", str(EXAMPLES / "sts.yaml"), str(EXAMPLES / "tasks.yaml"), cwd=REPOSITORY,
                 SLACK_WEBHOOK_URL=SECRET, SLACK_DATA_TEAM_WEBHOOK=SECRET + "2")
    assert result.returncode == 0, result.stderr
    assert "OK, 3 task(s)" in result.stdout


def test_sts_validate_names_the_bad_url_key_without_showing_the_url(tmp_path: Path):
    config = tmp_path / "sts.yaml"
    config.write_text("slack:\n  enabled: true\n  webhook_url: ${SLACK_WEBHOOK_URL}\n")
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("tasks:\n  - name: t\n    function: sts_core.testing:noop\n    every: 1m\n")
    result = sts("validate", "--config", str(config), str(tasks), cwd=tmp_path,
                 SLACK_WEBHOOK_URL="hooks.slack.com/services/T0001/B0001/Zx9SecretToken")
    assert result.returncode == 2
    assert "slack.webhook_url: expected an http:// or https:// URL" in result.stderr
    assert "Zx9SecretToken" not in result.stderr + result.stdout


def test_sts_validate_rejects_an_unknown_webhook_name_with_a_did_you_mean(tmp_path: Path):
    config = tmp_path / "sts.yaml"
    config.write_text("slack:\n  enabled: true\n  webhook_url: ${SLACK_WEBHOOK_URL}\n"
                      "  webhooks:\n    data-team: ${SLACK_DATA_TEAM_WEBHOOK}\n")
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("tasks:\n  - name: t\n    function: sts_core.testing:noop\n    every: 1m\n"
                     "    alerts:\n      slack: {webhook: dat-team}\n")
    result = sts("validate", "--config", str(config), str(tasks), cwd=tmp_path,
                 SLACK_WEBHOOK_URL=SECRET, SLACK_DATA_TEAM_WEBHOOK=SECRET + "2")
    assert result.returncode != 0, result.stdout
    assert "alerts.slack.webhook: unknown webhook 'dat-team' (did you mean 'data-team'?)" in result.stderr
    assert "Zx9SecretToken" not in result.stderr + result.stdout
