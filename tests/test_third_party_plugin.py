"""A third-party task type, pip-installed like any plugin, is found through the ``sts`` entry points.

The distribution ``tests/plugin_fixtures/sts-greeting`` (one pyproject.toml, one module) is
installed into a private directory, and the ``sts`` command runs in a new process that sees it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

FIXTURES = str(Path(__file__).parent / "plugin_fixtures")
if FIXTURES not in sys.path:
    sys.path.insert(0, FIXTURES)
from fixture_distributions import install, run_sts  # noqa: E402 - found through FIXTURES

GREET = """\
tasks:
  - name: greet
    type: greeting
    params:
      who: world
"""
GREET_NOBODY = """\
tasks:
  - name: greet
    type: greeting
    params:
      whom: world
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory sts-greeting is installed in."""
    return install("sts-greeting", tmp_path_factory.mktemp("greeting"))


@pytest.fixture
def task_files(tmp_path: Path) -> Path:
    """A directory with ``greet.yaml`` (valid) and ``nobody.yaml`` (lacks ``params.who``)."""
    (tmp_path / "greet.yaml").write_text(GREET)
    (tmp_path / "nobody.yaml").write_text(GREET_NOBODY)
    return tmp_path


def plugin_row(stdout: str, name: str) -> list[str]:
    """The cells of ``name``'s row in the ``sts plugins`` table (split on runs of two spaces)."""
    rows = [line.split("  ") for line in stdout.splitlines()]
    found = [[cell.strip() for cell in row if cell.strip()] for row in rows if row[0] == name]
    assert len(found) == 1, f"expected one row for {name!r} in:\n{stdout}"
    return found[0]


def test_sts_plugins_lists_the_installed_plugin_with_what_it_provides(site, tmp_path):
    done = run_sts("plugins", site=site, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    greeting = plugin_row(done.stdout, "greeting")
    assert greeting == ["greeting", "sts-greeting", "0.1.0", "enabled", "task_types:greeting", "register_task_types"]
    assert plugin_row(done.stdout, "tasks")[3] == "enabled"


def test_sts_validate_accepts_a_task_of_the_new_type(site, task_files):
    done = run_sts("validate", "greet.yaml", site=site, cwd=task_files)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "greet.yaml: OK, 1 task(s)"


def test_sts_validate_reports_the_plugins_problem_with_file_line_and_key_path(site, task_files):
    done = run_sts("validate", "nobody.yaml", site=site, cwd=task_files)
    assert done.returncode == 2
    assert "nobody.yaml:4: tasks[0] (greet).params.who: required: the name to greet" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_sts_run_executes_the_task_through_the_plugin(site, task_files):
    done = run_sts("run", "greet.yaml", "--for", "3s", site=site, cwd=task_files)
    assert done.returncode == 0, done.stderr
    assert "hello, world" in done.stdout.splitlines()
    assert "greet attempt 1 succeeded" in done.stdout + done.stderr  # the run log
    summary = done.stdout.split("Run summary", 1)[1].splitlines()
    header, greet = summary[1].split(), summary[2].split()
    assert dict(zip(header, greet, strict=True))["SUCCEEDED"] == "1"


@pytest.mark.parametrize("name", ["greeting", "sts-greeting"], ids=["entry point name", "distribution name"])
def test_a_plugin_disabled_by_the_environment_provides_nothing(site, task_files, name):
    env = {"STS_DISABLE_PLUGINS": name}
    listed = run_sts("plugins", site=site, cwd=task_files, env=env)
    assert listed.returncode == 0, listed.stderr
    assert plugin_row(listed.stdout, "greeting")[1:4] == ["sts-greeting", "0.1.0", "disabled"]

    done = run_sts("validate", "greet.yaml", site=site, cwd=task_files, env=env)
    assert done.returncode == 2
    assert re.search(r"greet\.yaml:3: tasks\[0\] \(greet\)\.type: unknown task type 'greeting'; "
                     r"installed: [^;]*'python'", done.stderr), done.stderr
    assert "greeting (disabled)" in done.stderr
    assert "Traceback" not in done.stderr
