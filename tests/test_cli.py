"""The ``sts`` command as a user meets it: each test runs the installed command in a subprocess.

Task files, task functions and config files are written into ``tmp_path``, which is also the
working directory, so ``function: cli_jobs:greet`` imports the module written there (the CLI
puts the current directory on the import path, as ``python -m`` does).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_helpers import TIMESTAMP, clean_environment, read_until, run_sts, sts_command, summary_table

from sts_cli import cli
from sts_core import __version__
from sts_core.hookspecs import hookimpl
from sts_core.plugins import PluginManager

COMMANDS = ("run", "validate", "plugins", "tasks", "runs")
NEXT_FIRE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")

JOBS_MODULE = '''\
import time


def greet(name="world"):
    print(f"hello, {name}, from cli_jobs")
    return name


def nap(seconds=1.0):
    time.sleep(seconds)
    return "rested"
'''

GOOD_TASKS = """\
tasks:
  - name: greet
    function: cli_jobs:greet
    kwargs: {name: tester}
    every: 1s
  - name: echo
    type: shell
    command: echo shell says hi
    every: 1s
"""


sts = run_sts


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory holding the task functions module ``cli_jobs``."""
    write(tmp_path, "cli_jobs.py", JOBS_MODULE)
    return tmp_path


# -- the command itself --------------------------------------------------------------------------


def test_the_sts_console_script_is_the_command_line_package_outside_the_kernel():
    import tomllib

    from sts_core.testing import STS_ENTRY_POINT

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["sts"] == STS_ENTRY_POINT == "sts_cli:main"
    assert "sts_cli" in pyproject["tool"]["setuptools"]["packages"]


def test_version_prints_the_package_version(tmp_path):
    result = sts("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"sts {__version__}"


def test_help_lists_every_command(tmp_path):
    result = sts("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s+\w", result.stdout, re.MULTILINE), command
    assert "--config" in result.stdout


def test_no_command_prints_the_help_to_stderr_and_exits_2(tmp_path):
    result = sts(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: sts" in result.stderr
    assert all(command in result.stderr for command in COMMANDS)


def test_an_unknown_command_is_a_usage_error_listing_the_commands(tmp_path):
    result = sts("bogus", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'bogus'" in result.stderr
    assert all(repr(command) in result.stderr for command in COMMANDS)


# -- validate ------------------------------------------------------------------------------------


def test_validate_accepts_a_good_file_and_counts_its_tasks(workdir):
    write(workdir, "good.yaml", GOOD_TASKS)
    result = sts("validate", "good.yaml", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "good.yaml: OK, 2 task(s)"


def _task(extra: str, name: str = "a", function: str = "cli_jobs:greet") -> str:
    lines = [f"  - name: {name}", f"    function: {function}"]
    lines += [f"    {line}" for line in textwrap.dedent(extra).strip().splitlines()]
    return "\n".join(lines) + "\n"


BAD_TASK_FILES = {
    # case: (task file text, line of the problem, text the message must contain)
    "misspelt key": (
        "tasks:\n" + _task("every: 1s\nretires: 2"),
        5, ["tasks[0] (a).retires", "did you mean 'retries'"],
    ),
    "unknown trigger kind": (
        "tasks:\n" + _task("trigger: {kind: weekly}"),
        4, ["tasks[0] (a).trigger.kind", "'weekly'", "'cron'", "'date'", "'delay'", "'interval'"],
    ),
    "unknown task type": (
        "tasks:\n  - name: a\n    type: docker\n    every: 1s\n",
        3, ["tasks[0] (a).type", "'docker'", "'python'", "'shell'"],
    ),
    "invalid cron expression": (
        "tasks:\n" + _task("cron: '61 * * * *'"),
        4, ["tasks[0] (a).cron", "invalid cron expression", "61"],
    ),
    "invalid time zone": (
        "tasks:\n" + _task("cron: '* * * * *'\ntimezone: Mars/Olympus"),
        5, ["tasks[0] (a).timezone", "Mars/Olympus"],
    ),
    "dependency cycle": (
        "tasks:\n" + _task("parent_tasks: [b]") + _task("parent_tasks: [a]", name="b"),
        4, ["(a).parent_tasks", "cycle", "a -> b -> a"],
    ),
    "unknown parent": (
        "tasks:\n" + _task("parent_tasks: [nosuch]"),
        4, ["tasks[0] (a).parent_tasks", "unknown parent 'nosuch'"],
    ),
    "bad import path": (
        "tasks:\n" + _task("every: 1s", function="nosuchmodule:fn"),
        3, ["tasks[0] (a).function", "nosuchmodule"],
    ),
    "function missing from its module": (
        "tasks:\n" + _task("every: 1s", function="cli_jobs:nosuchfn"),
        3, ["tasks[0] (a).function", "nosuchfn"],
    ),
    "malformed YAML": (
        "tasks:\n  - name: a\n    function: cli_jobs:greet\n   every: [1s\n",
        4, ["malformed YAML"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_TASK_FILES))
def test_validate_rejects_a_bad_file_naming_the_file_line_and_key_path(workdir, case):
    text, line, fragments = BAD_TASK_FILES[case]
    write(workdir, "bad.yaml", text)
    result = sts("validate", "bad.yaml", cwd=workdir)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "OK" not in result.stdout
    assert f"bad.yaml:{line}:" in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"


def test_validate_reports_every_problem_of_a_file_at_once(workdir):
    write(workdir, "bad.yaml", "tasks:\n" + _task("every: 1s\nretires: 2") + _task("every: often", name="b"))
    result = sts("validate", "bad.yaml", cwd=workdir)
    assert result.returncode == 2
    assert "bad.yaml:5: tasks[0] (a).retires" in result.stderr
    assert "bad.yaml:8: tasks[1] (b).every" in result.stderr


def test_validate_reports_a_bad_function_a_bad_cron_and_bad_retries_together(workdir):
    write(workdir, "bad.yaml", "tasks:\n" + _task("cron: '99 * * * *'\nretries: -1", function="cli_jobs:nosuch"))
    result = sts("validate", "bad.yaml", cwd=workdir)
    assert result.returncode == 2
    assert "bad.yaml:3: tasks[0] (a).function: module 'cli_jobs' has no attribute 'nosuch'" in result.stderr
    assert "bad.yaml:4: tasks[0] (a).cron: invalid cron expression '99 * * * *'" in result.stderr
    assert "bad.yaml:5: tasks[0] (a).retries: expected a whole number >= 0, got -1" in result.stderr


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("option", ["every", "timeout", "jitter", "backoff", "retries"])
def test_a_number_too_large_for_a_float_is_exit_2_with_the_usual_message(workdir, command, option):
    trigger = "" if option == "every" else "every: 1s"
    write(workdir, "huge.yaml", "tasks:\n" + _task(f"{trigger}\n{option}: 1{'0' * 309}"))
    result = sts(command, "huge.yaml", *(["--for", "1s"] if command == "run" else []), cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "huge.yaml:" in result.stderr and f"tasks[0] (a).{option}: expected" in result.stderr
    assert "a number of about 310 digits" in result.stderr


def test_validate_refuses_a_billion_laughs_file_at_once(workdir):
    levels = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    write(workdir, "bomb.yaml", "\n".join(levels) + "\ntasks:\n" + _task("every: 1s\nargs: [*l8]"))
    started = time.monotonic()
    result = sts("validate", "bomb.yaml", cwd=workdir)
    assert time.monotonic() - started < 5  # a new Python process; refusing takes milliseconds of it
    assert result.returncode == 2
    assert result.stderr.startswith("sts: error: invalid input:\n  bomb.yaml: refused: its YAML aliases")
    assert len(result.stderr) < 1000


def test_validate_shows_huge_user_values_shortened_in_every_message(workdir):
    long = "x" * 100_000
    greet = {"function": "cli_jobs:greet"}
    entries = [
        {"name": "a", "function": f"{long}.mod:fn", "every": "1s"},
        {"name": "b", "function": long, "every": "1s"},  # a registered name
        {"name": "c", "type": long, "command": "echo", "every": "1s"},
        {"name": "d", **greet, "trigger": {"kind": long}},
        {"name": "e", **greet, "parent_tasks": [long]},
        {"name": "f", **greet, "every": "1s", "alerts": {long: {}}},
        {"name": "g", **greet, "cron": "61 " + "* " * 5000 + "*"},
        {"name": "h", **greet, "every": "1s", long: 1},
        {"name": long, **greet, "every": "1s"},
        {"name": "i", **greet, "every": "1s", "kwargs": {long: [long] * 100}},
    ]
    write(workdir, "long.json", json.dumps({"tasks": entries}, indent=1))
    result = sts("validate", "long.json", cwd=workdir)
    assert result.returncode == 2
    lines = result.stderr.splitlines()[1:]
    assert len(lines) == len(entries), result.stderr[:3000]
    assert all(len(line) < 500 for line in lines), max(lines, key=len)[:1000]


def test_validate_of_a_missing_file_names_it_without_a_traceback(tmp_path):
    result = sts("validate", "nosuch.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "nosuch.yaml" in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.stderr


# -- configuration errors ------------------------------------------------------------------------


BAD_CONFIG = "logging:\n  loglevel: LOUD\n"


def test_a_bad_config_file_given_with_config_is_named_with_line_and_key_path(workdir):
    write(workdir, "good.yaml", GOOD_TASKS)
    write(workdir, "bad_config.yaml", BAD_CONFIG)
    result = sts("--config", "bad_config.yaml", "validate", "good.yaml", cwd=workdir)
    assert result.returncode == 2
    assert "bad_config.yaml:2: logging.loglevel" in result.stderr
    assert "LOUD" in result.stderr and "DEBUG" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_is_accepted_after_the_command_too(workdir):
    write(workdir, "good.yaml", GOOD_TASKS)
    write(workdir, "typo_config.yaml", "retires: 3\n")
    result = sts("validate", "good.yaml", "--config", "typo_config.yaml", cwd=workdir)
    assert result.returncode == 2
    assert "typo_config.yaml:1: retires" in result.stderr
    assert "did you mean 'retries'" in result.stderr


def test_a_bad_config_file_named_by_sts_config_is_named_with_key_path(tmp_path):
    write(tmp_path, "env_config.yaml", "executor:\n  max_workers: 0\n")
    result = sts("plugins", cwd=tmp_path, STS_CONFIG="env_config.yaml")
    assert result.returncode == 2
    assert "env_config.yaml:2: executor.max_workers" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_config_file_is_named(tmp_path):
    result = sts("plugins", "--config", "nosuch_config.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "nosuch_config.yaml" in result.stderr and "not found" in result.stderr


def test_a_bad_environment_override_names_the_variable(tmp_path):
    result = sts("plugins", cwd=tmp_path, STS_RETRIES="many")
    assert result.returncode == 2
    assert "retries" in result.stderr and "STS_RETRIES" in result.stderr


def test_version_works_even_when_sts_config_is_broken(tmp_path):
    write(tmp_path, "bad_config.yaml", BAD_CONFIG)
    result = sts("--version", cwd=tmp_path, STS_CONFIG="bad_config.yaml")
    assert result.returncode == 0
    assert result.stdout.strip() == f"sts {__version__}"


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["--config", "bad_config.yaml", "--help"],
                                  ["runs", "--config", "bad_config.yaml", "--help"]])
def test_help_works_even_when_the_config_is_broken(tmp_path, args):
    write(tmp_path, "bad_config.yaml", BAD_CONFIG)
    result = sts(*args, cwd=tmp_path, STS_CONFIG="bad_config.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: sts")
    assert result.stderr == ""


def test_a_broken_config_is_still_reported_for_a_command_that_is_not_built_in(tmp_path):
    write(tmp_path, "bad_config.yaml", BAD_CONFIG)
    result = sts("bogus", cwd=tmp_path, STS_CONFIG="bad_config.yaml")
    assert result.returncode == 2
    assert "invalid choice: 'bogus'" in result.stderr
    result = sts("plugins", cwd=tmp_path, STS_CONFIG="bad_config.yaml")
    assert result.returncode == 2
    assert "bad_config.yaml:2: logging.loglevel" in result.stderr
    assert "Traceback" not in result.stderr


# -- plugin commands (in process, with a plugin given to the plugin manager directly) -------------


class WorkerPlugin:
    """Registers ``sts consume --queue NAME``, whose handler records what it was called with."""

    calls: list[tuple[str, object]] = []
    disable_lists: list[list[str]] = []  # what the CLI passed to each PluginManager it made

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--queue", default="default")

    @classmethod
    def handler(cls, args, config):
        cls.calls.append((args.queue, config.get("plugins.disable")))
        return 0

    @hookimpl
    def register_commands(self, register):
        register("consume", "consume a queue", add_arguments=self.add_arguments, handler=self.handler)


@pytest.fixture
def worker_plugin(tmp_path, monkeypatch):
    """``cli.main`` sees the ``workers`` plugin (and no installed ones); runs in ``tmp_path``."""
    plugin = WorkerPlugin()

    def plugin_manager(disable=(), **_):
        WorkerPlugin.disable_lists.append(list(disable))
        return PluginManager(disable, entry_points=False, plugins=[("workers", plugin)])

    monkeypatch.setattr("sts_core.plugins.PluginManager", plugin_manager)
    for key in [key for key in os.environ if key.upper().startswith("STS_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    WorkerPlugin.calls, WorkerPlugin.disable_lists = [], []
    return WorkerPlugin


@pytest.mark.parametrize("queue", ["tasks", "run", "plugins"])
def test_a_plugin_command_is_found_even_when_an_argument_is_named_like_a_built_in_command(worker_plugin, queue):
    assert cli.main(["consume", "--queue", queue]) == 0
    assert cli.main(["consume", "--queue=--version"]) == 0
    assert worker_plugin.calls == [(queue, []), ("--version", [])]


def test_plugin_commands_are_collected_with_plugins_disable_of_the_config(worker_plugin, tmp_path):
    write(tmp_path, "sts.yaml", "plugins:\n  disable: [sts-other]\n")
    assert cli.main(["consume", "--config", "sts.yaml"]) == 0
    assert worker_plugin.disable_lists == [["sts-other"]]
    assert worker_plugin.calls == [("default", ["sts-other"])]


def test_built_in_commands_and_version_do_not_collect_plugin_commands(worker_plugin, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert worker_plugin.disable_lists == []
    assert cli.main(["plugins"]) == 0
    assert worker_plugin.disable_lists == [[]]  # the one `sts plugins` lists, none to parse the command line
    assert "workers" in capsys.readouterr().out


def test_the_help_lists_plugin_commands_even_when_the_config_is_broken(worker_plugin, tmp_path, capsys):
    write(tmp_path, "bad_config.yaml", BAD_CONFIG)
    for args in (["--help"], ["--config", "bad_config.yaml", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(args)
        assert exit_info.value.code == 0
        assert re.search(r"^\s+consume\s+consume a queue \[plugin workers\]", capsys.readouterr().out, re.M)
    assert cli.main(["--config", "bad_config.yaml", "consume"]) == 2
    assert "bad_config.yaml:2: logging.loglevel" in capsys.readouterr().err
    assert worker_plugin.calls == []


# -- plugins, tasks, runs ------------------------------------------------------------------------


def test_plugins_lists_the_standard_plugins_as_enabled_with_their_distributions(tmp_path):
    result = sts("plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "DISTRIBUTION", "VERSION", "STATUS"]
    by_name = {row.split()[0]: row.split() for row in rows if row.strip()}
    for name, provides in [("memory", "backends:memory"), ("triggers", "triggers:cron"), ("tasks", "task_types:shell")]:
        assert by_name[name][1] == f"sts-{name}"
        assert by_name[name][3] == "enabled"
        assert provides in " ".join(by_name[name])


def test_plugins_shows_a_plugin_switched_off_by_the_environment_as_disabled(tmp_path):
    result = sts("plugins", cwd=tmp_path, STS_DISABLE_PLUGINS="sts-triggers")
    assert result.returncode == 0, result.stderr
    triggers = next(row.split() for row in result.stdout.splitlines() if row.startswith("triggers "))
    assert triggers[3] == "disabled"


def test_tasks_shows_each_task_with_its_trigger_and_next_fire_time(workdir):
    write(workdir, "tasks.yaml", """\
        tasks:
          - name: hourly
            function: cli_jobs:greet
            every: 1h
          - name: new_year
            function: cli_jobs:greet
            cron: "0 0 1 1 *"
            timezone: UTC
          - name: after_hourly
            function: cli_jobs:greet
            parent_tasks: [hourly]
        """)
    before = datetime.now(UTC).replace(microsecond=0)
    result = sts("tasks", "tasks.yaml", cwd=workdir)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "TYPE", "TRIGGER", "NEXT", "FIRE"]
    row = {line.split()[0]: line for line in rows}
    assert set(row) == {"hourly", "new_year", "after_hourly"}

    assert "every 1h" in row["hourly"]
    next_hourly = datetime.strptime(NEXT_FIRE.search(row["hourly"]).group(), "%Y-%m-%d %H:%M:%SZ")
    assert before + timedelta(minutes=59) <= next_hourly.replace(tzinfo=UTC) <= before + timedelta(hours=1, seconds=5)

    assert "cron 0 0 1 1 * (UTC)" in row["new_year"]
    assert f"{before.year + 1}-01-01 00:00:00Z" in row["new_year"]

    assert "after hourly" in row["after_hourly"]
    assert not NEXT_FIRE.search(row["after_hourly"])


def test_tasks_of_a_bad_file_is_the_same_error_as_validate(workdir):
    write(workdir, "bad.yaml", "tasks:\n" + _task("every: 1s\nretires: 2"))
    result = sts("tasks", "bad.yaml", cwd=workdir)
    assert result.returncode == 2
    assert "bad.yaml:5: tasks[0] (a).retires" in result.stderr


def test_runs_on_the_memory_backend_explains_that_runs_live_in_the_running_process(tmp_path):
    result = sts("runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "No runs recorded" in result.stdout
    assert "memory backend" in result.stdout and "running process" in result.stdout


def test_runs_with_an_unknown_state_is_a_usage_error(tmp_path):
    result = sts("runs", "--state", "bogus", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "sts runs: error: argument --state: invalid choice: 'bogus'" in result.stderr
    assert "'succeeded'" in result.stderr and "'timed_out'" in result.stderr


@pytest.mark.parametrize("limit", ["0", "-3", "many"])
def test_runs_with_a_limit_below_1_is_a_usage_error(tmp_path, limit):
    result = sts("runs", f"--limit={limit}", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"sts runs: error: argument --limit: expected a whole number of 1 or more, got {limit!r}" in result.stderr


# -- run -----------------------------------------------------------------------------------------


def test_run_for_a_while_logs_each_run_and_prints_a_summary(workdir):
    write(workdir, "good.yaml", GOOD_TASKS)
    started = time.monotonic()
    result = sts("run", "good.yaml", "--for", "3s", cwd=workdir)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert 2.5 < elapsed < 15
    out = result.stdout
    assert out.startswith("Loaded 2 task(s) from good.yaml")
    assert re.search(rf"^{TIMESTAMP} INFO\s+sts\.scheduler\s+STS started \(backend memory, 2 task\(s\)", out, re.M)
    for task in ("greet", "echo"):
        assert re.search(rf"^{TIMESTAMP} INFO\s+sts\.run\s+\S+ {task} attempt 1 started$", out, re.M), task
        assert re.search(rf"^{TIMESTAMP} INFO\s+sts\.run\s+\S+ {task} attempt 1 succeeded in \S+$", out, re.M), task
    assert "hello, tester, from cli_jobs" in out
    assert re.search(rf"^{TIMESTAMP} INFO\s+sts\.scheduler\s+STS stopped$", out, re.M)

    summary = summary_table(out)
    assert set(summary) == {"greet", "echo"}
    for counts in summary.values():
        assert counts["succeeded"] >= 2
        assert counts["failed"] == counts["timed_out"] == counts["interrupted"] == 0


def test_run_of_a_missing_file_exits_2_without_starting(tmp_path):
    result = sts("run", "nosuch.yaml", "--for", "1s", cwd=tmp_path)
    assert result.returncode == 2
    assert "nosuch.yaml" in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert "STS started" not in result.stdout


def test_run_of_a_bad_file_exits_2_with_the_validation_message(workdir):
    write(workdir, "bad.yaml", "tasks:\n" + _task("every: 1s", function="nosuchmodule:fn"))
    result = sts("run", "bad.yaml", "--for", "1s", cwd=workdir)
    assert result.returncode == 2
    assert "bad.yaml:3: tasks[0] (a).function" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("duration", ["3x", "-1s", "-1"])
def test_run_with_an_invalid_duration_is_a_usage_error(workdir, duration):
    write(workdir, "good.yaml", GOOD_TASKS)
    result = sts("run", "good.yaml", f"--for={duration}", cwd=workdir)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "sts run: error: argument --for: expected a duration" in result.stderr
    assert repr(duration) in result.stderr
    assert "STS started" not in result.stdout


def test_run_without_tasks_warns_that_nothing_is_scheduled_and_runs_anyway(tmp_path):
    result = sts("run", "--for", "0.5s", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sts: warning: no tasks: nothing is scheduled (no task file given)" in result.stderr
    assert "STS started" in result.stdout and "STS stopped" in result.stdout


def test_run_of_a_file_with_tasks_gives_no_warning(workdir):
    write(workdir, "good.yaml", GOOD_TASKS)
    result = sts("run", "good.yaml", "--for", "0.5s", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


def test_json_log_format_makes_each_run_line_a_json_object(workdir):
    write(workdir, "once.yaml", "tasks:\n" + _task("kwargs: {name: json}"))  # no trigger: runs once, at start
    result = sts("run", "once.yaml", "--for", "1s", cwd=workdir, STS_LOGGING__FORMAT="json")
    assert result.returncode == 0, result.stderr
    assert not re.search(rf"^{TIMESTAMP} ", result.stdout, re.M), "a log line in text format"
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {"STS started", "STS stopped"} <= {r["message"].split(" (")[0] for r in records}
    runs = [r for r in records if r["logger"] == "sts.run"]
    assert [(r["task"], r["attempt"], r["state"]) for r in runs] == [("a", 1, "running"), ("a", 1, "succeeded")]
    assert runs[0]["run_id"] == runs[1]["run_id"]
    assert all({"time", "level", "message", "task", "run_id", "attempt", "state"} <= set(r) for r in runs)
    assert summary_table(result.stdout)["a"]["succeeded"] == 1


def _start_run(workdir: Path, task_file: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*sts_command(), "run", task_file], cwd=workdir, env=clean_environment(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _interrupt_when(
    process: subprocess.Popen[str], needle: str, send: Callable[[int], None], timeout: float = 20,
) -> tuple[str, str]:
    """Call ``send(pid)`` once ``needle`` is printed; return all the output (killing the process after
    ``timeout`` seconds, which fails the test)."""
    seen: list[str] = []
    try:
        read_until(process, needle, seen)
        send(process.pid)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise AssertionError(f"still running {timeout}s after the signal:\n{''.join(seen)}{out}") from None
    finally:
        process.kill()
    return "".join(seen) + out, err


# A plain kill(pid) lets the kernel deliver the signal to any thread of the process. These two
# helpers pin the choice, so each case below is deterministic (Linux only).
_SYS_TGKILL = {"x86_64": 234, "aarch64": 131}


def _sigint_to_main_thread(pid: int) -> None:
    number = _SYS_TGKILL.get(platform.machine())
    if sys.platform != "linux" or number is None:
        pytest.skip("needs Linux tgkill to address the main thread")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, pid, pid, signal.SIGINT) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


def _sigint_landing_on_another_thread(pid: int) -> None:
    # Linux: kill() with a thread id is still a process-wide signal, but the kernel offers it
    # to that thread first (as it may for a Ctrl-C when that thread is the one running).
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        pytest.skip("needs Linux /proc to find the threads")
    os.kill(next(int(tid) for tid in sorted(os.listdir(tasks)) if int(tid) != pid), signal.SIGINT)


NAP_EVERY_SECOND = "tasks:\n" + _task("every: 1s\nkwargs: {seconds: 1.5}", name="nap", function="cli_jobs:nap")


def test_sigint_stops_a_run_gracefully_letting_the_run_in_flight_finish(workdir):
    write(workdir, "nap.yaml", NAP_EVERY_SECOND)
    process = _start_run(workdir, "nap.yaml")
    out, err = _interrupt_when(process, "nap attempt 1 started", _sigint_to_main_thread)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "received SIGINT: stopping gracefully" in out
    assert re.search(r"nap attempt 1 succeeded in 1\.\ds", out), out
    assert re.search(r"STS stopped\n", out)
    nap = summary_table(out)["nap"]
    assert nap["succeeded"] == 1 and nap["interrupted"] == 0


def test_sigint_stops_a_run_whichever_thread_the_kernel_hands_it_to(workdir):
    write(workdir, "nap.yaml", NAP_EVERY_SECOND)
    process = _start_run(workdir, "nap.yaml")
    out, err = _interrupt_when(process, "nap attempt 1 started", _sigint_landing_on_another_thread, timeout=4)
    assert process.returncode == 0, err
    assert "STS stopped" in out and "Run summary" in out


def test_ctrl_c_before_start_has_installed_its_handlers_stops_the_run_cleanly(workdir, monkeypatch, capsys):
    # In process: the KeyboardInterrupt is raised as start() returns, the moment a real Ctrl-C
    # would be one (no handler of the scheduler yet). `sts run` stops the scheduler and sums up.
    from sts_core.blocking import TaskScheduler
    from sts_core.logsetup import reset_logging

    start = TaskScheduler.start

    def start_then_ctrl_c(self, **roles):
        start(self, **roles)
        raise KeyboardInterrupt

    write(workdir, "once.yaml", "tasks:\n" + _task("kwargs: {name: ctrl-c}"))
    monkeypatch.setattr(TaskScheduler, "start", start_then_ctrl_c)
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for key in [key for key in os.environ if key.upper().startswith("STS_")]:
        monkeypatch.delenv(key)
    handler = signal.getsignal(signal.SIGINT)
    started = time.monotonic()
    try:
        assert cli.main(["run", "once.yaml", "--for", "30s"]) == 0
    finally:
        reset_logging()
    assert time.monotonic() - started < 15
    assert "Run summary" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is handler
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("sts-")]


def test_sigint_right_after_start_is_graceful_too(workdir):
    # A SIGINT in the few milliseconds between 'STS started' and the handlers of start() is a
    # KeyboardInterrupt in `sts run`, which stops the scheduler as the handler would.
    write(workdir, "nap.yaml", "tasks:\n" + _task("kwargs: {seconds: 1}", name="nap", function="cli_jobs:nap"))
    process = _start_run(workdir, "nap.yaml")  # no trigger: the run starts as soon as STS has
    out, err = _interrupt_when(process, "nap attempt 1 started", lambda pid: os.kill(pid, signal.SIGINT), timeout=5)
    assert process.returncode == 0, err
    assert "STS stopped" in out and "Run summary" in out
