"""Specification of task files: loading, shape errors with file/line/key path, full validation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sts_core.errors import Problem, TaskValidationError
from sts_core.hookspecs import hookimpl
from sts_core.plugins import PluginManager
from sts_core.task import Task
from sts_core.taskfile import load_task_file, validate_task_file

# --- fakes ---------------------------------------------------------------------------------------


class _Never:
    """A trigger that never fires."""

    def first_fire(self, now: Any) -> None:
        return None


def _trigger(spec: Mapping[str, Any], zone: ZoneInfo) -> _Never:
    return _Never()


def _cron(spec: Mapping[str, Any], zone: ZoneInfo) -> _Never:
    if len(spec["cron"].split()) != 5:
        raise ValueError(f"expected 5 cron fields, got {spec['cron']!r}")
    return _Never()


class _Python:
    def validate(self, task: Task, resolve_function: Callable[[Any], Any]) -> list[Problem]:
        return [Problem("function", "required: a python task needs a function")] if task.function is None else []


class FakePlugin:
    @hookimpl
    def register_triggers(self, register: Any) -> None:
        register("interval", _trigger)
        register("cron", _cron)

    @hookimpl
    def register_task_types(self, register: Any) -> None:
        register("python", _Python())


def resolve(ref: Any) -> Callable[..., Any]:
    return print


@pytest.fixture
def plugins() -> PluginManager:
    return PluginManager(entry_points=False, plugins=[("fake", FakePlugin())])


def write(tmp_path: Path, text: str, name: str = "tasks.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, **kwargs: Any) -> list[str]:
    """The rendered problem lines of loading (or, with plugins, validating) ``path``."""
    with pytest.raises(TaskValidationError) as caught:
        if kwargs:
            validate_task_file(path, resolve_function=resolve, **kwargs)
        else:
            load_task_file(path)
    assert caught.value.source == str(path)
    return caught.value.render().splitlines()


# --- valid files ------------------------------------------------------------------------------------

EXAMPLE_YAML = """\
tasks:
  - name: report
    function: reports:build
    every: 30s
    retries: 2
  - name: cleanup
    type: shell
    command: "rm -rf /tmp/cache/*"
    timezone: Europe/Berlin
    parent_tasks: [report]
"""


def test_a_yaml_task_file_loads_into_tasks(tmp_path):
    report, cleanup = load_task_file(write(tmp_path, EXAMPLE_YAML))
    assert report == Task("report", "reports:build", every=30.0, retries=2)
    assert cleanup == Task("cleanup", type="shell", command="rm -rf /tmp/cache/*", timezone="Europe/Berlin",
                           parent_tasks=("report",))


def test_a_json_task_file_loads_into_the_same_tasks(tmp_path):
    data = {"tasks": [t.to_dict() for t in load_task_file(write(tmp_path, EXAMPLE_YAML))]}
    from_json = load_task_file(write(tmp_path, json.dumps(data, indent=2), "tasks.json"))
    assert from_json == load_task_file(write(tmp_path, EXAMPLE_YAML, "again.yml"))


def test_an_empty_task_list_is_valid(tmp_path):
    assert load_task_file(write(tmp_path, "tasks: []\n")) == []


def test_yaml_date_times_become_task_date_times(tmp_path):
    text = "tasks:\n  - {name: a, function: f, at: 2026-12-01T09:30:00+01:00}\n" \
           "  - {name: b, function: f, every: 1h, start: 2026-12-01, end: 2026-12-31 18:00:00}\n"
    a, b = load_task_file(write(tmp_path, text))
    assert a.at == datetime(2026, 12, 1, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    assert b.start == datetime(2026, 12, 1)
    assert b.end == datetime(2026, 12, 31, 18, 0)


def test_yaml_merge_keys_and_anchors_are_allowed(tmp_path):
    text = "tasks:\n  - &base {name: a, function: f, retries: 3}\n  - {<<: *base, name: b}\n"
    _, b = load_task_file(write(tmp_path, text))
    assert (b.name, b.retries, b.function) == ("b", 3, "f")


def test_validate_task_file_returns_the_tasks_when_everything_is_valid(tmp_path, plugins):
    text = "tasks:\n  - {name: a, function: f, cron: '0 3 * * *'}\n  - {name: b, function: f, parent_tasks: [a]}\n"
    tasks = validate_task_file(write(tmp_path, text), plugins=plugins, resolve_function=resolve)
    assert [t.name for t in tasks] == ["a", "b"]


# --- the file itself ------------------------------------------------------------------------------


def test_a_missing_file_is_named_with_a_did_you_mean(tmp_path):
    write(tmp_path, "tasks: []\n", "tasks.yml")
    path = tmp_path / "tasks.yaml"
    assert problems_of(path) == [f"{path}: task file not found (did you mean 'tasks.yml'?)"]


def test_a_directory_is_not_a_task_file(tmp_path):
    assert problems_of(tmp_path) == [f"{tmp_path}: is a directory; expected a .yaml, .yml or .json task file"]


def test_a_file_that_cannot_be_read_is_reported(tmp_path, monkeypatch):
    path = write(tmp_path, "tasks: []\n")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert problems_of(path) == [f"{path}: cannot read the task file: permission denied"]


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "tasks.yaml"
    path.write_bytes(b"tasks:\n  - name: caf\xe9\n")
    assert problems_of(path) == [f"{path}:2: not UTF-8 text: byte 0xe9 cannot be decoded"]


def test_an_unsupported_suffix_is_reported(tmp_path):
    path = write(tmp_path, "tasks: []\n", "tasks.toml")
    assert problems_of(path) == [f"{path}: unsupported file type '.toml'; expected one of .yaml, .yml, .json"]


def test_malformed_yaml_names_line_and_column(tmp_path):
    path = write(tmp_path, "tasks:\n  - name: a\n    every: [1m\n  - name: b\n")
    assert problems_of(path) == [
        f"{path}:4: malformed YAML at line 4, column 9: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence, line 3)"
    ]


def test_malformed_json_names_line_and_column(tmp_path):
    path = write(tmp_path, '{"tasks": [\n  {"name": "a",}\n]}\n', "tasks.json")
    assert problems_of(path) == [
        f"{path}:2: malformed JSON at line 2, column 16: Expecting property name enclosed in double quotes"
    ]


@pytest.mark.parametrize("text", ["", "  \n\n"])
def test_an_empty_file_is_reported(tmp_path, text):
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path}: the task file is empty; expected a mapping with a 'tasks:' list"]


def test_a_yaml_file_of_only_comments_is_reported_as_holding_no_data(tmp_path):
    path = write(tmp_path, "# nothing yet\n")
    [line] = problems_of(path)
    assert line.startswith(f"{path}: the task file holds no data")


def test_a_second_yaml_document_is_refused(tmp_path):
    path = write(tmp_path, "tasks: []\n---\ntasks: []\n")
    [line] = problems_of(path)
    assert line.startswith(f"{path}:2: malformed YAML at line 2, column 1: but found another document")


# --- the top level ------------------------------------------------------------------------------------


def test_a_top_level_that_is_not_a_mapping_is_reported(tmp_path):
    path = write(tmp_path, "- name: a\n")
    assert problems_of(path) == [f"{path}:1: expected a mapping with a 'tasks:' list at the top level, got a list"]


def test_a_missing_tasks_key_and_an_unknown_top_level_key_are_both_reported(tmp_path):
    path = write(tmp_path, "# my tasks\ntask:\n  - name: a\n")
    assert problems_of(path) == [
        f"{path}:2: task: unknown top-level key (did you mean 'tasks'?); a task file holds only a 'tasks:' list",
        f"{path}:2: missing 'tasks:': expected a list of task definitions under a top-level 'tasks:' key",
    ]


def test_tasks_that_is_not_a_list_is_reported(tmp_path):
    path = write(tmp_path, "tasks:\n  name: a\n")
    assert problems_of(path) == [f"{path}:1: tasks: expected a list of task definitions, got a mapping"]


def test_an_empty_tasks_key_suggests_an_empty_list(tmp_path):
    path = write(tmp_path, "tasks:\n")
    assert problems_of(path) == [
        f"{path}:1: tasks: expected a list of task definitions, got nothing (null) "
        "(write 'tasks: []' for a file with no tasks)"
    ]


def test_an_entry_that_is_not_a_mapping_is_reported(tmp_path):
    path = write(tmp_path, "tasks:\n  - name: a\n    function: f\n  - just-a-name\n")
    assert problems_of(path) == [
        f"{path}:4: tasks[1]: expected a mapping of task options (name, function, every, ...), "
        "got the text 'just-a-name'"
    ]


# --- entries -------------------------------------------------------------------------------------------


def test_an_unknown_task_key_names_line_key_path_and_a_did_you_mean(tmp_path):
    path = write(tmp_path, "tasks:\n  - name: report\n    function: f\n    retires: 3\n")
    assert problems_of(path) == [f"{path}:4: tasks[0] (report).retires: unknown task option (did you mean 'retries'?)"]


def test_bad_values_are_collected_across_every_entry(tmp_path):
    path = write(tmp_path, """\
tasks:
  - name: a
    function: f
    retries: -1
    timeout: soon
  - name: b
    function: f
    every: 30s
  - name: c
    executor: threads
""")
    assert problems_of(path) == [
        f"{path}:4: tasks[0] (a).retries: expected a whole number >= 0, got -1",
        f"{path}:5: tasks[0] (a).timeout: expected a duration such as 30s, 5m, 1h30m or a number of seconds, "
        "got 'soon'",
        f"{path}:10: tasks[2] (c).executor: expected one of thread, process, got 'threads' (did you mean 'thread'?)",
    ]


def test_a_missing_name_points_at_the_entry(tmp_path):
    path = write(tmp_path, "tasks:\n  - function: f\n    every: 1m\n")
    assert problems_of(path) == [f"{path}:2: tasks[0].name: required: every task needs a name"]


def test_a_bad_name_is_reported_without_the_name_in_the_path(tmp_path):
    path = write(tmp_path, "tasks:\n  - name: 42\n")
    [line] = problems_of(path)
    assert line.startswith(f"{path}:2: tasks[0].name: expected a task name")


def test_a_nested_key_path_gets_the_line_of_the_nested_key(tmp_path):
    path = write(tmp_path, "tasks:\n  - name: a\n    function: f\n    trigger:\n      every: 5\n")
    assert problems_of(path) == [f"{path}:4: tasks[0] (a).trigger.kind: expected the name of a trigger kind"]


def test_duplicate_task_names_name_both_places(tmp_path):
    path = write(tmp_path, "tasks:\n  - name: a\n    function: f\n  - name: b\n    function: f\n  - name: a\n")
    assert problems_of(path) == [
        f"{path}:6: tasks[2] (a).name: duplicate task name 'a': already defined by tasks[0] (line 2)"
    ]


def test_a_key_given_twice_in_one_entry_is_reported(tmp_path):
    path = write(tmp_path, "tasks:\n  - name: a\n    retries: 1\n    function: f\n    retries: 2\n")
    assert problems_of(path) == [
        f"{path}:5: tasks[0] (a).retries: duplicate key 'retries' (first at line 3); each key may appear only once"
    ]


def test_json_problems_carry_the_line_of_the_key(tmp_path):
    text = '{\n  "tasks": [\n    {"name": "a", "function": "f"},\n    {"name": "b",\n     "retries": "x",\n' \
           '     "function": "f", "function": "g"}\n  ]\n}\n'
    path = write(tmp_path, text, "tasks.json")
    assert problems_of(path) == [
        f"{path}:5: tasks[1] (b).retries: expected a whole number >= 0, got 'x'",
        f"{path}:6: tasks[1] (b).function: duplicate key 'function' (first at line 6); each key may appear only once",
    ]


# --- all or nothing -------------------------------------------------------------------------------------


def test_one_bad_entry_means_no_task_is_returned(tmp_path, plugins):
    good = "".join(f"  - {{name: t{i}, function: f, every: 1m}}\n" for i in range(5))
    path = write(tmp_path, "tasks:\n" + good + "  - {name: bad, function: f, every: 1m, retries: many}\n")
    result = None
    with pytest.raises(TaskValidationError) as caught:
        result = load_task_file(path)
    assert result is None
    assert caught.value.render() == f"{path}:7: tasks[5] (bad).retries: expected a whole number >= 0, got 'many'"
    with pytest.raises(TaskValidationError):
        result = validate_task_file(path, plugins=plugins, resolve_function=resolve)
    assert result is None


def test_every_problem_is_a_line_naming_the_file_never_a_traceback(tmp_path, plugins):
    path = write(tmp_path, "tasks:\n  - name: a\n    every: 1m\n    cron: '* * *'\n  - 7\nextra: 1\n")
    lines = problems_of(path, plugins=plugins)
    assert len(lines) == 4  # two triggers, no function (checked on the valid options), not a mapping, extra key
    assert all(line.startswith(f"{path}:") for line in lines)
    assert "Traceback" not in "\n".join(lines)


# --- validation with plugins ---------------------------------------------------------------------------


def test_validate_reports_plugin_problems_with_file_line_and_key_path(tmp_path, plugins):
    path = write(tmp_path, """\
tasks:
  - name: nightly
    function: f
    cron: "0 0 3 * * *"
  - name: report
    every: 1m
  - name: odd
    type: pyhton
    function: f
  - name: once
    function: f
    at: 2026-12-01T09:30:00+01:00
""")
    lines = problems_of(path, plugins=plugins)
    # a valid cron expression (seconds first) that only this fake trigger refuses
    assert lines[0] == f"{path}:4: tasks[0] (nightly).cron: expected 5 cron fields, got '0 0 3 * * *'"
    assert lines[1] == f"{path}:5: tasks[1] (report).function: required: a python task needs a function"
    assert lines[2].startswith(f"{path}:8: tasks[2] (odd).type: unknown task type 'pyhton' (did you mean 'python'?)")
    assert lines[3].startswith(f"{path}:12: tasks[3] (once).at: needs trigger kind 'date': unknown trigger 'date'")
    assert len(lines) == 4


def test_validate_reports_unknown_parents_with_a_did_you_mean(tmp_path, plugins):
    path = write(tmp_path, "tasks:\n  - {name: extract, function: f}\n"
                           "  - name: load\n    function: f\n    parent_tasks: [extrakt]\n")
    assert problems_of(path, plugins=plugins) == [
        f"{path}:5: tasks[1] (load).parent_tasks: unknown parent 'extrakt' (did you mean 'extract'?)"
    ]


def test_validate_accepts_parents_among_existing_tasks(tmp_path, plugins):
    path = write(tmp_path, "tasks:\n  - {name: load, function: f, parent_tasks: [extract]}\n")
    [task] = validate_task_file(path, plugins=plugins, resolve_function=resolve, existing={"extract": Task("extract")})
    assert task.parent_tasks == ("extract",)


def test_validate_reports_a_cycle_on_parent_tasks(tmp_path, plugins):
    path = write(tmp_path, """\
tasks:
  - name: a
    function: f
    parent_tasks: [c]
  - name: b
    function: f
    parent_tasks: [a]
  - name: c
    function: f
    parent_tasks: [b]
""")
    assert problems_of(path, plugins=plugins) == [
        f"{path}:4: tasks[0] (a).parent_tasks: dependency cycle a -> c -> b -> a (each task lists the next as a parent)"
    ]


def test_validate_reports_a_cycle_through_existing_tasks(tmp_path, plugins):
    path = write(tmp_path, "tasks:\n  - {name: a, function: f, parent_tasks: [b]}\n")
    lines = problems_of(path, plugins=plugins, existing={"b": Task("b", "f", parent_tasks=["a"])})
    assert lines == [f"{path}:2: tasks[0] (a).parent_tasks: dependency cycle a -> b -> a "
                     "(each task lists the next as a parent)"]


def test_a_task_that_is_its_own_parent_is_reported_in_the_file(tmp_path, plugins):
    path = write(tmp_path, "tasks:\n  - name: a\n    function: f\n    parent_tasks: a\n")
    assert problems_of(path, plugins=plugins) == [
        f"{path}:4: tasks[0] (a).parent_tasks: a task cannot be its own parent ('a')"
    ]


def test_a_child_of_an_entry_with_bad_values_is_not_told_its_parent_is_unknown(tmp_path, plugins):
    path = write(tmp_path, "tasks:\n  - {name: a, function: f, retries: x}\n"
                           "  - {name: b, function: f, parent_tasks: [a]}\n")
    assert problems_of(path, plugins=plugins) == [
        f"{path}:2: tasks[0] (a).retries: expected a whole number >= 0, got 'x'"
    ]


def test_a_duplicate_name_is_reported_once_when_validating(tmp_path, plugins):
    path = write(tmp_path, "tasks:\n  - {name: a, function: f}\n  - {name: a, function: f}\n")
    assert problems_of(path, plugins=plugins) == [
        f"{path}:3: tasks[1] (a).name: duplicate task name 'a': already defined by tasks[0] (line 2)"
    ]


def test_a_large_file_is_loaded_and_validated(tmp_path, plugins):
    entries = [{"name": "t0", "function": "f", "every": "1m"}]
    entries += [{"name": f"t{i}", "function": "f", "parent_tasks": [f"t{i - 1}"]} for i in range(1, 2_000)]
    path = write(tmp_path, json.dumps({"tasks": entries}, indent=1), "big.json")
    tasks = validate_task_file(path, plugins=plugins, resolve_function=resolve)
    assert len(tasks) == 2_000
    assert tasks[-1].parent_tasks == ("t1998",)


def test_an_entry_with_an_unknown_key_still_gets_its_other_options_checked(tmp_path, plugins):
    path = write(tmp_path, """\
tasks:
  - name: a
    function: m:f
    retires: 2
    cron: "61 * * *"
""")
    lines = problems_of(path, plugins=plugins)
    assert any(".retires: unknown task option (did you mean 'retries'?)" in line for line in lines)
    assert any(line.startswith(f"{path}:5: tasks[0] (a).cron:") for line in lines)


# --- hostile and wrong input: alias bombs, huge numbers, every problem at once (issue 14) -------------


def billion_laughs(levels: int = 9) -> str:
    """A few hundred bytes of YAML whose aliases expand to 9**levels strings."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\ntasks:\n  - name: boom\n    function: f\n    every: 1s\n    args: [*l{levels - 1}]\n"


@pytest.mark.parametrize("validate", [False, True], ids=["load", "validate"])
def test_a_billion_laughs_file_is_refused_fast_naming_the_file(tmp_path, plugins, validate):
    path = write(tmp_path, billion_laughs())
    assert len(path.read_bytes()) < 600
    started = time.perf_counter()
    lines = problems_of(path, plugins=plugins) if validate else problems_of(path)
    assert time.perf_counter() - started < 0.5
    assert lines == [f"{path}: refused: its YAML aliases (*name) expand to more than 100,000 extra values, as in an "
                     "alias-expansion (\"billion laughs\") attack; write the data out, or share less of it"]


def test_a_recursive_alias_is_refused(tmp_path):
    path = write(tmp_path, "tasks: &t\n  - name: a\n    function: f\n    args: *t\n")
    assert problems_of(path) == [f"{path}: refused: an alias refers to the node that contains it "
                                 "(a recursive structure); expected plain data"]


def test_aliases_that_share_defaults_between_many_tasks_are_fine(tmp_path):
    path = write(tmp_path, "tasks:\n  - &d {name: t0, function: f, every: 1m, kwargs: {a: [1, 2, 3]}}\n"
                 + "".join(f"  - {{<<: *d, name: t{i}}}\n" for i in range(1, 2000)))
    assert len(load_task_file(path)) == 2000


def test_a_message_never_embeds_a_huge_value_in_full(tmp_path, plugins):
    path = write(tmp_path, "tasks:\n  - name: a\n    function: f\n    every: [" + ", ".join(["1"] * 2_000) + "]\n")
    [line] = problems_of(path, plugins=plugins)
    assert line.startswith(f"{path}:4: tasks[0] (a).every: expected a duration such as 30s, 5m or 1h30m, got [1, 1,")
    assert len(line) < len(str(path)) + 200


def test_an_integer_too_large_for_a_float_is_a_problem_not_a_traceback(tmp_path, plugins):
    huge = "1" + "0" * 309
    path = write(tmp_path, f"tasks:\n  - name: a\n    function: f\n    every: {huge}\n    backoff: {huge}\n")
    assert problems_of(path, plugins=plugins) == [
        f"{path}:4: tasks[0] (a).every: expected a duration of at most 100 years, got a number of about 310 digits",
        f"{path}:5: tasks[0] (a).backoff: expected a finite number >= 1.0, got a number of about 310 digits",
    ]


def test_a_task_timeout_of_zero_is_refused(tmp_path):
    path = write(tmp_path, "tasks:\n  - {name: a, function: f, every: 1s, timeout: 0}\n")
    assert problems_of(path) == [
        f"{path}:2: tasks[0] (a).timeout: expected a duration greater than zero such as 30s, 5m or 1h30m, got 0"]


class _StrictPython:
    def validate(self, task: Task, resolve_function: Callable[[Any], Any]) -> list[Problem]:
        if task.function is None:
            return [Problem("function", "required: a python task needs a function")]
        return [] if task.function == "f" else [Problem("function", f"cannot import {task.function!r}")]


class StrictPlugin:
    @hookimpl
    def register_triggers(self, register: Any) -> None:
        register("cron", _cron)

    @hookimpl
    def register_task_types(self, register: Any) -> None:
        register("python", _StrictPython())


def test_every_problem_of_a_task_is_reported_model_and_plugin_checks_alike(tmp_path):
    strict = PluginManager(entry_points=False, plugins=[("strict", StrictPlugin())])
    path = write(tmp_path, "tasks:\n  - name: a\n    function: nosuch:fn\n    cron: '* *'\n    retries: -1\n"
                           "    evry: 3\n  - name: b\n    function: 'bad path:'\n    cron: '* * * * *'\n")
    assert problems_of(path, plugins=strict) == [
        f"{path}:3: tasks[0] (a).function: cannot import 'nosuch:fn'",
        # checked when the task is built, by the installed cron trigger's option
        f"{path}:4: tasks[0] (a).cron: invalid cron expression '* *': expected 5 fields (minute hour day-of-month "
        "month day-of-week), or 6 with seconds first, got 2",
        f"{path}:5: tasks[0] (a).retries: expected a whole number >= 0, got -1",
        f"{path}:6: tasks[0] (a).evry: unknown task option (did you mean 'every'?)",
        # the malformed function is reported once, not again as "required" by the task type
        f"{path}:8: tasks[1] (b).function: expected an import path 'package.module:function', got 'bad path:'",
    ]


def test_a_missing_task_file_suggests_only_task_files(tmp_path):
    write(tmp_path, "def f(): pass\n", "jobs.py")
    path = tmp_path / "jobs.yaml"
    assert problems_of(path) == [f"{path}: task file not found"]


@pytest.mark.parametrize("name", ["tasks.yaml", "tasks.json"])
def test_an_integer_too_long_to_read_is_refused_not_a_traceback(tmp_path, name):
    digits = "1" + "0" * 5000
    text = (f"tasks:\n  - name: a\n    retries: {digits}\n" if name.endswith(".yaml")
            else f'{{"tasks": [{{"name": "a", "retries": {digits}}}]}}')
    path = write(tmp_path, text, name)
    where = f"{path}:3" if name.endswith(".yaml") else str(path)
    assert problems_of(path) == [f"{where}: refused: a number of more than 4,300 digits, which cannot be read"]


# --- loading into a scheduler ----------------------------------------------------------------------


class CountingTaskType:
    """A task type that counts how often it is asked to validate a task."""

    def __init__(self) -> None:
        self.validated: list[str] = []

    def validate(self, task: Task, resolve_function: Any) -> list[Problem]:
        self.validated.append(task.name)
        return []

    def prepare(self, task: Task, resolve_function: Any) -> None:
        return None

    async def execute(self, context: Any) -> None:
        return None


class Counting:
    def __init__(self) -> None:
        self.task_type = CountingTaskType()

    @hookimpl
    def register_task_types(self, register: Callable[..., None]) -> None:
        register("counted", self.task_type)


def test_a_task_file_loaded_into_a_scheduler_is_validated_once(make_scheduler, tmp_path):
    """``sts run`` loads its task file with ``load_task_file``: the file's checks cover what
    ``add_tasks`` would check, so each task is validated once, not twice."""
    counting = Counting()
    path = write(tmp_path, "tasks:\n  - {name: a, type: counted, every: 10s}\n"
                           "  - {name: b, type: counted, every: 1m}\n")

    async def main() -> list[tuple[str, int]]:
        async with make_scheduler(plugins=PluginManager(plugins=[("counting", counting)])) as scheduler:
            loaded = await scheduler.load_task_file(path)
        return [(task.name, task.version) for task in loaded]

    assert asyncio.run(main()) == [("a", 1), ("b", 1)]
    assert sorted(counting.task_type.validated) == ["a", "b"]
