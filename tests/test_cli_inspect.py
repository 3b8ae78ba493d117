"""``sts tasks``, ``sts runs``, ``sts plugins`` and ``sts next``: JSON output, time zones, terminal
width, help texts, and what the memory backend can and cannot show from another process."""

from __future__ import annotations

import argparse
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_helpers import run_sts as sts

from sts_cli import cli

JOBS = "def greet(name='world'):\n    print(f'hello, {name}')\n    return name\n"

TASKS = """\
tasks:
  - name: hourly
    function: inspect_jobs:greet
    every: 1h
  - name: new_year
    function: inspect_jobs:greet
    cron: "0 0 1 1 *"
    timezone: UTC
  - name: after_hourly
    function: inspect_jobs:greet
    parent_tasks: [hourly]
  - name: resting
    function: inspect_jobs:greet
    every: 1h
    enabled: false
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "inspect_jobs.py").write_text(JOBS)
    (tmp_path / "tasks.yaml").write_text(TASKS)
    return tmp_path


def test_tasks_json_gives_each_task_with_its_state_trigger_next_fire_and_definition(workdir):
    before = datetime.now(UTC)
    result = sts("tasks", "tasks.yaml", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    tasks = {task["name"]: task for task in json.loads(result.stdout)}
    assert set(tasks) == {"hourly", "new_year", "after_hourly", "resting"}
    hourly = tasks["hourly"]
    assert (hourly["state"], hourly["trigger"], hourly["version"]) == ("active", "every 1h", 1)
    assert hourly["definition"] == {
        "name": "hourly", "function": "inspect_jobs:greet", "every": 3600.0, "version": 1}
    nxt = datetime.fromisoformat(hourly["next_fire"])
    assert before + timedelta(minutes=59) < nxt < before + timedelta(hours=1, seconds=5)
    assert tasks["after_hourly"]["next_fire"] is None and tasks["after_hourly"]["trigger"] == "after hourly"
    assert (tasks["resting"]["state"], tasks["resting"]["next_fire"]) == ("paused", None)


def test_table_timestamps_follow_the_config_timezone_and_show_their_offset(workdir):
    (workdir / "sts.yaml").write_text("timezone: Asia/Kolkata\n")
    result = sts("tasks", "tasks.yaml", "--config", "sts.yaml", cwd=workdir)
    assert result.returncode == 0, result.stderr
    new_year = next(line for line in result.stdout.splitlines() if line.startswith("new_year"))
    assert f"{datetime.now(UTC).year + 1}-01-01 05:30:00+05:30" in new_year


def test_next_lists_the_coming_fire_times_of_a_task_in_a_task_file(workdir):
    result = sts("next", "hourly", "tasks.yaml", "-n", "3", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    times = [datetime.fromisoformat(t) for t in data["next_fires"]]
    assert len(times) == 3 and times[1] - times[0] == times[2] - times[1] == timedelta(hours=1)

    table = sts("next", "new_year", "tasks.yaml", "-n", "2", cwd=workdir)
    year = datetime.now(UTC).year
    assert table.stdout.split() == [f"{year + 1}-01-01", "00:00:00Z", f"{year + 2}-01-01", "00:00:00Z"]


@pytest.mark.parametrize(("name", "note"), [
    ("resting", "paused: it does not fire"), ("after_hourly", "fires when its parents hourly succeed"),
])
def test_next_says_why_a_task_has_no_fire_times(workdir, name, note):
    result = sts("next", name, "tasks.yaml", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert note in result.stdout


def test_next_of_a_name_the_file_lacks_lists_the_files_tasks(workdir):
    result = sts("next", "hourli", "tasks.yaml", cwd=workdir)
    assert result.returncode == 2
    assert "tasks.yaml has no task named 'hourli' (its tasks: hourly, new_year, after_hourly, resting)" in result.stderr


@pytest.mark.parametrize("command", ["pause", "resume", "trigger", "remove"])
def test_task_commands_on_the_memory_backend_say_that_they_need_a_shared_backend(tmp_path, command):
    result = sts(command, "hourly", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"`sts {command}` needs a backend that processes share, such as redis" in result.stderr
    assert "SIGHUP" in result.stderr


def test_runs_json_is_an_empty_list_when_nothing_is_recorded(tmp_path):
    result = sts("runs", "--json", cwd=tmp_path)
    assert (result.returncode, json.loads(result.stdout)) == (0, [])


def test_runs_of_an_unknown_run_id_says_so_and_why_on_the_memory_backend(tmp_path):
    result = sts("runs", "r-nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "no run with id 'r-nope'" in result.stderr and "memory backend" in result.stderr


def test_plugins_fits_an_80_column_terminal_wrapping_its_long_columns(tmp_path):
    result = sts("plugins", cwd=tmp_path, COLUMNS="80")
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    header, *lines = result.stdout.splitlines()
    hooks = header.index("HOOKS")
    first = next(i for i, line in enumerate(lines) if line.startswith("triggers "))
    block = [lines[first], *itertools.takewhile(lambda line: line.startswith(" "), lines[first + 1:])]
    cell = "".join(line[hooks:].strip() for line in block)  # the wrapped cell, put back together
    assert cell.startswith("register_triggers")


def test_plugins_json_gives_every_plugin_in_full(tmp_path):
    result = sts("plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plugins = {plugin["name"]: plugin for plugin in json.loads(result.stdout)}
    assert plugins["triggers"]["status"] == "enabled"
    assert "triggers:cron" in plugins["triggers"]["provides"]
    assert plugins["memory"]["hooks"] == ["register_backends", "register_config_sections"]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_argument_of_every_built_in_command_has_help():
    missing = [
        f"sts {name} {action.dest}"
        for name, command in _subcommands(cli.build_parser()).items()
        for action in command._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert missing == []


def test_validate_help_describes_its_file_argument(tmp_path):
    result = sts("validate", "--help", cwd=tmp_path)
    assert "FILE" in result.stdout and "task file (YAML or JSON)" in result.stdout
