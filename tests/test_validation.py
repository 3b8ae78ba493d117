"""Specification of ``sts_core.validation``: the checks on tasks that need plugins and context."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sts_core.errors import Problem, TaskValidationError
from sts_core.hookspecs import hookimpl
from sts_core.plugins import PluginManager
from sts_core.task import Task
from sts_core.validation import check_tasks, compile_trigger


class FakeTrigger:
    """A trigger that remembers what it was built from."""

    def __init__(self, spec: Mapping[str, Any], zone: ZoneInfo) -> None:
        self.spec = dict(spec)
        self.zone = zone

    def first_fire(self, now: datetime) -> datetime | None:
        return now

    def next_fire(self, previous: datetime) -> datetime | None:
        return None

    def describe(self) -> str:
        return f"fake {self.spec['kind']}"


def interval_factory(spec: Mapping[str, Any], zone: ZoneInfo) -> FakeTrigger:
    if spec["every"] < 1:
        raise ValueError(f"expected an interval of at least 1s, got {spec['every']}s")
    return FakeTrigger(spec, zone)


def cron_factory(spec: Mapping[str, Any], zone: ZoneInfo) -> FakeTrigger:
    fields = spec["cron"].split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 cron fields, got {len(fields)} in {spec['cron']!r}")
    return FakeTrigger(spec, zone)


def broken_factory(spec: Mapping[str, Any], zone: ZoneInfo) -> FakeTrigger:
    raise KeyError("oops")


class FakePython:
    """A task type that needs a function it can resolve."""

    def validate(self, task: Task, resolve_function: Callable[[Any], Callable[..., Any]]) -> list[Problem]:
        if task.function is None:
            return [Problem("function", "required: a python task needs a function")]
        try:
            resolve_function(task.function)
        except LookupError as exc:
            return [Problem("function", str(exc))]
        return []


class FakeShell:
    """A task type that needs a command."""

    def validate(self, task: Task, resolve_function: Callable[[Any], Callable[..., Any]]) -> list[Problem]:
        return [] if task.command else [Problem("command", "required: a shell task needs a command")]


class ExplodingType:
    def validate(self, task: Task, resolve_function: Callable[[Any], Callable[..., Any]]) -> list[Problem]:
        raise RuntimeError("bug in plugin")


class FakePlugin:
    @hookimpl
    def register_triggers(self, register: Any) -> None:
        register("interval", interval_factory)
        register("cron", cron_factory)
        register("broken", broken_factory)

    @hookimpl
    def register_task_types(self, register: Any) -> None:
        register("python", FakePython())
        register("shell", FakeShell())
        register("exploding", ExplodingType())


FUNCTIONS = {"build": print, "clean": print}


def resolve(ref: Any) -> Callable[..., Any]:
    if ref in FUNCTIONS:
        return FUNCTIONS[ref]
    raise LookupError(f"no function registered as {ref!r}")


@pytest.fixture
def plugins() -> PluginManager:
    return PluginManager(entry_points=False, plugins=[("fake", FakePlugin())])


def check(tasks: list[Task], plugins: PluginManager, **kwargs: Any) -> list[tuple[int, str, str]]:
    return [(i, p.key_path, p.message) for i, p in check_tasks(tasks, plugins=plugins, resolve_function=resolve,
                                                               **kwargs)]


def job(name: str, **options: Any) -> Task:
    return Task(name, "build", **options)


# --- a valid batch ----------------------------------------------------------------------------


def test_a_valid_batch_has_no_problems(plugins):
    tasks = [
        job("report", every="30s"),
        Task("cleanup", type="shell", command="true", cron="0 3 * * *", timezone="Europe/Berlin"),
        job("after", parent_tasks=["report", "cleanup"]),
        job("manual"),
    ]
    assert check(tasks, plugins) == []


# --- triggers -----------------------------------------------------------------------------------


def test_an_unknown_trigger_kind_is_reported_on_trigger_kind_with_the_installed_ones(plugins):
    [(index, key, message)] = check([job("a", trigger={"kind": "intervall", "every": 5})], plugins)
    assert (index, key) == (0, "trigger.kind")
    assert "unknown trigger 'intervall' (did you mean 'interval'?)" in message
    assert "'cron'" in message


def test_a_shorthand_whose_trigger_kind_is_not_installed_names_the_kind(plugins):
    [(_, key, message)] = check([job("a", at="2026-12-01T09:30:00+01:00")], plugins)
    assert key == "at"
    assert "needs trigger kind 'date'" in message
    assert "installed: 'broken', 'cron', 'interval'" in message


def test_a_spec_the_trigger_refuses_is_reported_on_the_key_that_holds_it(plugins):
    # 6 fields are a valid cron expression (seconds first), which only this fake trigger refuses
    problems = check([job("a", cron="0 0 3 * * *"), job("b", every="0.5s"), job("c", trigger={"kind": "cron"} | {
        "cron": "0 0 4 * * *"})], plugins)
    assert problems == [
        (0, "cron", "expected 5 cron fields, got 6 in '0 0 3 * * *'"),
        (1, "every", "expected an interval of at least 1s, got 0.5s"),
        (2, "trigger", "expected 5 cron fields, got 6 in '0 0 4 * * *'"),
    ]


def test_a_trigger_plugin_that_crashes_becomes_a_problem_naming_the_plugin(plugins):
    [(_, key, message)] = check([job("a", trigger={"kind": "broken"})], plugins)
    assert key == "trigger"
    assert "trigger kind 'broken' (plugin 'fake') failed: KeyError" in message


def test_the_trigger_is_built_in_the_task_zone_or_the_default_zone(plugins):
    berlin = compile_trigger(job("a", every="1m", timezone="Europe/Berlin"), plugins, "UTC")
    tokyo = compile_trigger(job("b", every="1m"), plugins, "Asia/Tokyo")
    assert berlin.zone == ZoneInfo("Europe/Berlin")
    assert tokyo.zone == ZoneInfo("Asia/Tokyo")
    assert tokyo.spec == {"kind": "interval", "every": 60.0}


def test_compile_trigger_returns_none_for_a_task_without_a_trigger(plugins):
    assert compile_trigger(job("a"), plugins) is None


def test_compile_trigger_raises_a_task_validation_error_naming_the_task_and_key(plugins):
    with pytest.raises(TaskValidationError) as caught:
        compile_trigger(job("nightly", cron="0 1 * * * *"), plugins)
    assert caught.value.render() == "task 'nightly': cron: expected 5 cron fields, got 6 in '0 1 * * * *'"


def test_an_unknown_default_time_zone_is_a_problem_not_a_crash(plugins):
    [(_, key, message)] = check([job("a", every="1m")], plugins, default_timezone="Mars/Olympus")
    assert key == "timezone"
    assert "the default time zone is invalid: unknown time zone 'Mars/Olympus'" in message


# --- task types ---------------------------------------------------------------------------------


def test_an_unknown_task_type_is_reported_on_type_with_a_did_you_mean(plugins):
    [(_, key, message)] = check([job("a", type="pyhton")], plugins)
    assert key == "type"
    assert "unknown task type 'pyhton' (did you mean 'python'?)" in message


def test_the_task_types_own_problems_keep_their_keys(plugins):
    problems = check([Task("a"), Task("b", "missing"), Task("c", type="shell")], plugins)
    assert problems == [
        (0, "function", "required: a python task needs a function"),
        (1, "function", "no function registered as 'missing'"),
        (2, "command", "required: a shell task needs a command"),
    ]


def test_a_task_type_that_crashes_becomes_a_problem_naming_the_plugin(plugins):
    [(_, key, message)] = check([job("a", type="exploding")], plugins)
    assert key == "type"
    assert "task type 'exploding' (plugin 'fake') failed to validate the task: RuntimeError: bug in plugin" in message


# --- names and parents -----------------------------------------------------------------------------


def test_a_name_used_twice_in_the_batch_is_reported_on_the_later_task(plugins):
    problems = check([job("a"), job("b"), job("a")], plugins)
    assert problems == [(2, "name", "duplicate task name 'a' (already used by the task at index 0)")]


def test_a_task_replacing_an_existing_one_of_the_same_name_is_not_a_duplicate(plugins):
    assert check([job("a", every="1m")], plugins, existing={"a": job("a")}) == []


def test_an_unknown_parent_is_reported_with_a_did_you_mean(plugins):
    problems = check([job("extract"), job("load", parent_tasks=["extrakt", "zzz"])], plugins)
    assert problems == [
        (1, "parent_tasks", "unknown parent 'extrakt' (did you mean 'extract'?)"),
        (1, "parent_tasks", "unknown parent 'zzz'"),
    ]


def test_a_parent_may_be_an_existing_task(plugins):
    assert check([job("load", parent_tasks=["extract"])], plugins, existing={"extract": job("extract")}) == []


def test_an_unknown_parent_hint_considers_existing_tasks(plugins):
    [(_, _, message)] = check([job("load", parent_tasks=["extrac"])], plugins, existing={"extract": job("extract")})
    assert message == "unknown parent 'extrac' (did you mean 'extract'?)"


# --- cycles ------------------------------------------------------------------------------------------


def test_a_two_task_cycle_is_reported_with_its_path(plugins):
    problems = check([job("a", parent_tasks=["b"]), job("b", parent_tasks=["a"])], plugins)
    assert problems == [
        (0, "parent_tasks", "dependency cycle a -> b -> a (each task lists the next as a parent)"),
    ]


def test_a_longer_cycle_is_reported_once_from_its_first_task(plugins):
    tasks = [job("x"), job("a", parent_tasks=["c"]), job("b", parent_tasks=["a", "x"]), job("c", parent_tasks=["b"])]
    problems = check(tasks, plugins)
    assert problems == [
        (1, "parent_tasks", "dependency cycle a -> c -> b -> a (each task lists the next as a parent)"),
    ]


def test_the_cycle_shown_is_a_shortest_one_through_the_task(plugins):
    tasks = [
        job("a", parent_tasks=["b", "d"]),
        job("b", parent_tasks=["c"]),
        job("c", parent_tasks=["a"]),
        job("d", parent_tasks=["a"]),
    ]
    [(index, _, message)] = check(tasks, plugins)
    assert index == 0
    assert "dependency cycle a -> d -> a " in message


def test_a_cycle_through_existing_tasks_is_reported_on_the_new_task(plugins):
    existing = {"b": job("b", parent_tasks=["c"]), "c": job("c", parent_tasks=["a"])}
    problems = check([job("z"), job("a", parent_tasks=["b"])], plugins, existing=existing)
    assert problems == [
        (1, "parent_tasks", "dependency cycle a -> b -> c -> a (each task lists the next as a parent)"),
    ]


def test_a_new_task_replaces_the_existing_definition_in_the_cycle_check(plugins):
    existing = {"a": job("a", parent_tasks=["b"]), "b": job("b")}
    assert check([job("a"), job("b", parent_tasks=["a"])], plugins, existing=existing) == []
    assert check([job("b", parent_tasks=["a"])], plugins, existing=existing) == [
        (0, "parent_tasks", "dependency cycle b -> a -> b (each task lists the next as a parent)"),
    ]


def test_a_cycle_among_existing_tasks_only_is_not_blamed_on_the_batch(plugins):
    existing = {"a": job("a", parent_tasks=["b"]), "b": job("b", parent_tasks=["a"])}
    assert check([job("c", parent_tasks=["a"])], plugins, existing=existing) == []


def test_a_task_that_is_its_own_parent_is_refused_when_it_is_built():
    with pytest.raises(TaskValidationError, match=r"parent_tasks: a task cannot be its own parent \('a'\)"):
        job("a", parent_tasks=["a"])


def test_every_problem_of_a_batch_is_reported_at_once(plugins):
    tasks = [job("a", cron="0 0 3 * * *"), Task("b", type="nope"), job("c", parent_tasks=["d"]), job("a")]
    keys = [(i, key) for i, key, _ in check(tasks, plugins)]
    assert keys == [(0, "cron"), (1, "type"), (2, "parent_tasks"), (3, "name")]


# --- scale ---------------------------------------------------------------------------------------------


def test_ten_thousand_tasks_in_a_dependency_chain_are_checked(plugins):
    tasks = [job("t0", every="1m")] + [job(f"t{i}", parent_tasks=[f"t{i - 1}"]) for i in range(1, 10_000)]
    assert check(tasks, plugins) == []


def test_a_ten_thousand_task_cycle_is_reported_once_with_its_middle_elided(plugins):
    tasks = [job(f"t{i}", parent_tasks=[f"t{(i + 1) % 10_000}"]) for i in range(10_000)]
    [(index, key, message)] = check(tasks, plugins)
    assert (index, key) == (0, "parent_tasks")
    assert message.startswith("dependency cycle t0 -> t1 -> t2 -> t3 -> t4 -> t5 -> ... (9990 more) -> ")
    assert "-> t9999 -> t0 (each task" in message


def test_ten_thousand_unknown_parents_are_all_reported(plugins):
    tasks = [job(f"t{i}", parent_tasks=[f"missing{i}"]) for i in range(10_000)]
    problems = check(tasks, plugins)
    assert len(problems) == 10_000
    assert problems[-1] == (9_999, "parent_tasks", "unknown parent 'missing9999'")
