"""Options belong to their plugins: trigger kinds and task types declare the task options they
read, and ``Task`` converts and checks every one of them when it is created (issue 15)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from sts_core.errors import PluginError, TaskValidationError
from sts_core.hookspecs import hookimpl
from sts_core.options import Option, forget_installed, installed_options, plugin_added
from sts_core.plugins import PluginManager
from sts_core.task import Task
from sts_core.taskfile import load_task_file, validate_task_file

FIXTURES = str(Path(__file__).parent / "plugin_fixtures")
if FIXTURES not in sys.path:
    sys.path.insert(0, FIXTURES)
from fixture_distributions import install, run_sts  # noqa: E402 - found through FIXTURES


def job() -> None:
    """An importable function."""


def _channel(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("#"):
        raise ValueError(f"expected a channel name such as '#ops', got {value!r}")
    return value


def _minute(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 59:
        raise ValueError(f"expected a minute from 0 to 59, got {value!r}")
    return value


class NotifyType:
    """A third party's task type: posts to ``channel``."""

    def validate(self, task: Task, resolve_function: Any) -> list[Any]:
        return []

    def prepare(self, task: Task, resolve_function: Any) -> str:
        return task.channel

    async def execute(self, context: Any) -> str:
        return context.prepared


class NotifyPlugin:
    """Registers like any third-party plugin: a task type with its own option, and a trigger kind
    with its own shorthand."""

    @hookimpl
    def register_task_types(self, register: Any) -> None:
        register("notify", NotifyType(), options=[Option("channel", _channel, doc="notify: where to post")])

    @hookimpl
    def register_triggers(self, register: Any) -> None:
        register("hourly", lambda spec, zone: None, options=[Option("past_the_hour", _minute, doc="minute")])


@pytest.fixture
def notify() -> Any:
    with plugin_added("notify", NotifyPlugin()):
        yield


def problems(caught: pytest.ExceptionInfo[TaskValidationError]) -> list[tuple[str, str]]:
    return [(p.key_path, p.message) for p in caught.value.problems]


# --- the standard options, now declared by sts-triggers and sts-tasks ----------------------------------


def test_a_bad_cron_expression_is_refused_when_the_task_is_created():
    with pytest.raises(TaskValidationError) as caught:
        Task("t", function=job, cron="61 * * * *")
    assert str(caught.value) == (
        "task 't': cron: invalid cron expression '61 * * * *': bad minute field '61'; expected 0-59, "
        "written as a value, *, a list 1,15, a range 1-5 or a step */10"
    )


def test_the_standard_options_are_declared_by_their_plugins():
    declared = installed_options()
    assert {name: (declared.get(name).plugin, declared.get(name).owner)
            for name in ("every", "cron", "at", "delay", "function", "args", "kwargs", "executor", "command")} == {
        "every": ("triggers", "interval"), "cron": ("triggers", "cron"), "at": ("triggers", "date"),
        "delay": ("triggers", "delay"), "function": ("tasks", "python"), "args": ("tasks", "python"),
        "kwargs": ("tasks", "python"), "executor": ("tasks", "python"), "command": ("tasks", "shell"),
    }


def test_plugin_options_read_as_attributes_with_their_defaults():
    task = Task("report", function="reports:build", every="30s", retries=2)
    assert (task.function, task.every, task.retries, task.args, dict(task.kwargs), task.command, task.cron) == (
        "reports:build", 30.0, 2, (), {}, None, None)
    assert task.options == {"function": "reports:build", "every": 30.0}
    with pytest.raises(AttributeError, match="no installed plugin declares"):
        task.colour  # noqa: B018


def test_a_trigger_option_is_a_shorthand_for_its_trigger_kind():
    task = Task("t", job, at="2026-12-01T09:30:00+01:00")
    assert task.trigger_kind == "date" and task.trigger_option == "at"
    assert task.trigger_spec() == {"kind": "date", "at": datetime.fromisoformat("2026-12-01T09:30:00+01:00")}


def test_stored_tasks_of_the_earlier_model_still_load():
    # what to_dict wrote before the options moved to their plugins
    stored = {"name": "report", "function": "reports:build", "every": 3600.0, "retries": 2, "tags": ["a"],
              "kwargs": {"x": 1}, "executor": "process", "start": "2026-01-01T00:00:00+00:00", "version": 3}
    task = Task.from_dict(stored)
    assert (task.every, task.executor, task.kwargs, task.version) == (3600.0, "process", {"x": 1}, 3)
    assert task.to_dict() == stored


def test_a_plugin_switched_off_still_declares_its_options(monkeypatch):
    # so a task stored by a process with every plugin still loads; a scheduler without the plugin
    # refuses it when it is added, or reports a stored one as one it cannot fire
    monkeypatch.setenv("STS_DISABLE_PLUGINS", "triggers")
    forget_installed()
    try:
        assert Task("t", job, every="1h").trigger_kind == "interval"
    finally:
        forget_installed()


# --- a third-party task type and trigger kind ---------------------------------------------------------


def test_a_third_party_option_is_accepted_and_read_like_a_standard_one(notify):
    task = Task("page", type="notify", channel="#ops", every="1m")
    assert task.channel == "#ops"
    assert Task.from_dict(task.to_dict()) == task


def test_a_third_party_option_is_checked_when_the_task_is_created(notify):
    with pytest.raises(TaskValidationError) as caught:
        Task("page", type="notify", channel="ops", retries=-1)
    assert problems(caught) == [
        ("retries", "expected a whole number >= 0, got -1"),
        ("channel", "expected a channel name such as '#ops', got 'ops'"),
    ]


def test_an_unknown_option_gets_a_did_you_mean_over_the_declared_options(notify):
    with pytest.raises(TaskValidationError) as caught:
        Task("page", type="notify", chanel="#ops")
    assert str(caught.value) == "task 'page': chanel: unknown task option (did you mean 'channel'?)"


def test_without_the_plugin_its_option_is_unknown():
    with pytest.raises(TaskValidationError, match="channel: unknown task option"):
        Task("page", type="notify", channel="#ops")


def test_a_third_party_trigger_option_selects_its_kind_and_counts_as_the_one_trigger(notify):
    task = Task("t", job, past_the_hour=15)
    assert task.trigger_spec() == {"kind": "hourly", "past_the_hour": 15}
    with pytest.raises(TaskValidationError) as caught:
        Task("t", job, every="1h", past_the_hour=15)
    assert problems(caught) == [("past_the_hour", "a task has at most one trigger; got every and past_the_hour")]


def test_a_third_party_option_in_a_task_file_names_the_file_line_and_key_path(notify, tmp_path):
    path = tmp_path / "tasks.yaml"
    path.write_text("tasks:\n  - name: page\n    type: notify\n    every: 1m\n    channel: ops\n"
                    "  - name: other\n    type: notify\n    chanel: '#ops'\n")
    with pytest.raises(TaskValidationError) as caught:
        load_task_file(path)
    assert caught.value.lines() == [
        f"{path}:5: tasks[0] (page).channel: expected a channel name such as '#ops', got 'ops'",
        f"{path}:8: tasks[1] (other).chanel: unknown task option (did you mean 'channel'?)",
    ]


def test_a_valid_third_party_task_file_validates_against_the_plugins(notify, tmp_path):
    path = tmp_path / "tasks.yaml"
    path.write_text("tasks:\n  - name: page\n    type: notify\n    every: 1m\n    channel: '#ops'\n")
    plugins = PluginManager(plugins=[("notify", NotifyPlugin())])
    [task] = validate_task_file(path, plugins=plugins, resolve_function=lambda ref: job)
    assert task.channel == "#ops"


# --- declarations that cannot work ---------------------------------------------------------------------


class Declares:
    def __init__(self, *options: Option) -> None:
        self.options = options

    @hookimpl
    def register_task_types(self, register: Any) -> None:
        register(f"type-{id(self)}", NotifyType(), options=self.options)


def test_an_option_every_task_has_cannot_be_declared_again():
    with plugin_added("greedy", Declares(Option("retries", int))), pytest.raises(PluginError) as caught:
        Task("t", job)
    assert "plugin 'greedy' declares the task option 'retries'" in str(caught.value)


def test_two_plugins_declaring_one_option_are_named_both():
    with plugin_added("one", Declares(Option("url", str))), plugin_added("two", Declares(Option("url", str))), \
            pytest.raises(PluginError) as caught:
        Task("t", job)
    assert "task option 'url' is declared by both plugin 'one'" in str(caught.value)
    assert "plugin 'two'" in str(caught.value)


# --- a pip-installed plugin, found through its entry point -----------------------------------------------


@pytest.fixture(scope="module")
def echo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the fixture distribution sts-echo (a task type with options) is installed in."""
    return install("sts-echo", tmp_path_factory.mktemp("echo"))


def test_an_installed_plugins_options_are_checked_by_sts_validate(echo_site, tmp_path):
    (tmp_path / "echo.yaml").write_text("tasks:\n  - name: e\n    type: echo\n    message: hi\n    times: 11\n"
                                        "    every: 1m\n  - name: f\n    type: echo\n    mesage: hi\n")
    done = run_sts("validate", "echo.yaml", site=echo_site, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "echo.yaml:5: tasks[0] (e).times: expected a whole number from 1 to 10, got 11" in done.stderr
    assert "echo.yaml:9: tasks[1] (f).mesage: unknown task option (did you mean 'message'?)" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_installed_plugins_options_are_accepted_by_task(echo_site, monkeypatch):
    monkeypatch.syspath_prepend(str(echo_site))
    forget_installed()
    try:
        task = Task("e", type="echo", message="hi", every="1m")
        assert (task.message, task.times) == ("hi", 1)
        with pytest.raises(TaskValidationError, match=r"times: expected a whole number from 1 to 10, got 0"):
            Task("e", type="echo", message="hi", times=0)
    finally:
        monkeypatch.undo()
        forget_installed()


def test_the_options_a_trigger_kind_declares_are_checked_inside_trigger_too():
    with pytest.raises(TaskValidationError) as caught:
        Task("t", job, trigger={"kind": "cron", "cron": "61 * * * *"})
    assert [p.key_path for p in caught.value.problems] == ["trigger.cron"]
    assert caught.value.problems[0].message.startswith("invalid cron expression '61 * * * *': bad minute field")
    # a kind this process does not have is left to the scheduler that adds the task
    assert Task("t", job, trigger={"kind": "solar", "cron": "61"}).trigger_kind == "solar"


# --- a stored task whose plugin this process lacks ------------------------------------------------------


def _plan(task: Task) -> Any:
    from sts_core.config import Config
    from sts_core.functions import FunctionRegistry
    from sts_core.plans import PlanDefaults, compile_plan

    return compile_plan(task, defaults=PlanDefaults.from_config(Config()), plugins=PluginManager(),
                        resolve_function=FunctionRegistry().resolve)


def test_a_stored_task_keeps_the_options_no_plugin_here_declares_and_cannot_run_here():
    stored = {"name": "e", "type": "echo", "message": "hi", "every": 60.0, "version": 2}
    task = Task.from_stored(stored)
    assert (task.undeclared_options, task.message, task.to_dict()) == (["message"], "hi", stored)
    assert attrs.evolve(task, enabled=False).message == "hi"  # kept when the task is paused here
    plan = _plan(task)
    assert plan.trigger_error is None  # every is known here: it stays scheduled
    assert plan.load_error is not None and "unknown task type 'echo'" in plan.load_error


def test_a_stored_task_whose_trigger_option_no_plugin_here_declares_is_not_fired_as_triggerless():
    task = Task.from_stored({"name": "s", "function": "json:dumps", "past_the_hour": 15})
    plan = _plan(task)
    assert plan.trigger is None
    assert plan.trigger_error == (
        "its trigger cannot be built here: no plugin here declares its option(s) 'past_the_hour'")
    with pytest.raises(TaskValidationError, match="past_the_hour: unknown task option"):
        Task.from_dict({"name": "s", "function": "json:dumps", "past_the_hour": 15})  # user input stays strict
