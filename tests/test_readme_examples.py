"""The README's examples run as written: the quick start with ``wait()``, and the config example."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from cli_helpers import clean_environment, read_until

from sts.config import Config
from sts_core.plugins import PluginManager

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks(section: str, language: str) -> list[str]:
    """The fenced ``language`` blocks of the README section titled ``section`` (## level)."""
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def test_the_quick_start_with_wait_runs_until_stopped_then_returns(tmp_path):
    quick_start, wait = blocks("Quick start", "python")[:2]
    assert "scheduler.wait()" in wait
    script = tmp_path / "quick_start.py"
    script.write_text(quick_start + wait)
    process = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env=clean_environment(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        read_until(process, "Running basic task!")
        assert process.poll() is None, "wait() blocks while the scheduler runs"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.rstrip().endswith("scheduler stopped"), out


def test_the_config_example_loads_and_keeps_the_tasks_plugin_and_the_log_in_reach(tmp_path):
    (example,) = blocks("Configuration", "yaml")
    path = tmp_path / "sts.yaml"
    path.write_text(example)
    config = Config.from_yaml(path)
    disabled = config.get("plugins.disable")
    config.validate_sections(PluginManager(disable=disabled))
    assert "tasks" not in disabled and "sts-tasks" not in disabled
    assert not Path(config.get("log_file")).is_absolute()
