"""The installed plugin as a user meets it: ``sts plugins`` in a new process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

STS = Path(sys.executable).with_name("sts")


def plugins_line(cwd: Path, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("STS_")}
    environ.update(env)
    result = subprocess.run([str(STS), "plugins"], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("prometheus ")]
    return line


def test_sts_plugins_lists_prometheus_off_until_the_config_switches_it_on(tmp_path: Path) -> None:
    off = plugins_line(tmp_path)
    assert "sts-prometheus" in off and "0.1.0" in off and "off in config" in off
    assert "config_sections:prometheus" in off
    on = plugins_line(tmp_path, STS_PROMETHEUS__ENABLED="true")
    assert "off in config" not in on and "enabled" in on
