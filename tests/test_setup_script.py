"""scripts/setup.sh: the demo installs what running needs, the tests add their tools, and each
step is one line. pip is replaced by a stub that records its arguments (no network, no venv)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIP_STUB = """#!/bin/sh
echo "$* PYTHONWARNINGS=$PYTHONWARNINGS" >> "$(dirname "$0")/../pip-calls"
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files setup.sh reads, and a .venv whose python is the pip stub."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for pyproject in ROOT.glob("plugins/*/pyproject.toml"):
        target = tmp_path / pyproject.relative_to(ROOT)
        target.parent.mkdir(parents=True)
        shutil.copy(pyproject, target)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(PIP_STUB)
    python.chmod(0o755)
    return tmp_path


def setup(checkout: Path, *args: str) -> tuple[str, list[str]]:
    """Run setup.sh; return its output and the pip installs it ran since the last call."""
    calls = checkout / ".venv" / "pip-calls"
    calls.unlink(missing_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    result = subprocess.run(
        ["bash", "scripts/setup.sh", *args], cwd=checkout, capture_output=True, text=True, env=env, check=True,
        timeout=60,
    )
    installs = [line for line in calls.read_text().splitlines() if "-r " in line] if calls.exists() else []
    return result.stdout + result.stderr, installs


def test_the_demo_installs_only_what_running_needs_and_says_so(checkout):
    output, installs = setup(checkout, "run")
    assert output == "setup: installing STS and its plugins (first run, ~1 min)\n"
    assert len(installs) == 1 and "-r requirements.txt" in installs[0]
    assert "PYTHONWARNINGS=ignore:Editable installation" in installs[0]


def test_the_tests_after_the_demo_install_the_dev_tools_and_then_nothing_more(checkout):
    setup(checkout, "run")
    output, installs = setup(checkout, "dev")
    assert output == "setup: installing the test tools (pytest, ruff, schemathesis)\n"
    assert len(installs) == 1 and "-r requirements-dev.txt" in installs[0]
    assert setup(checkout, "dev") == ("", [])
    assert setup(checkout, "run") == ("", [])  # the dev install serves the demo too


def test_a_changed_pyproject_installs_again(checkout):
    setup(checkout, "dev")
    with (checkout / "plugins" / "sts-memory" / "pyproject.toml").open("a") as file:
        file.write("\n# changed\n")
    output, installs = setup(checkout, "run")
    assert output == "setup: installing STS and its plugins (the requirements changed)\n"
    assert "-r requirements.txt" in installs[0]


def test_requirements_dev_builds_on_the_runtime_requirements():
    runtime = (ROOT / "requirements.txt").read_text()
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in dev.splitlines()
    assert "pytest" not in runtime and "ruff" not in runtime
    plugins = sorted(path.parent.name for path in ROOT.glob("plugins/*/pyproject.toml"))
    assert [f"-e plugins/{name}" for name in plugins if f"-e plugins/{name}" not in runtime] == []
