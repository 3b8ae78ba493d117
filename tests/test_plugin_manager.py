"""The plugin manager: broken, clashing, failing and disabled plugins, lookups, events and lifecycle hooks.

Most tests run in this process. The broken plugin is a real distribution,
``tests/plugin_fixtures/sts-broken``, whose module raises on import; it is pip-installed into a
private directory that a test puts on ``sys.path`` (or a child ``sts`` process's ``PYTHONPATH``).
"""

from __future__ import annotations

import asyncio
import importlib.abc
import inspect
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sts_core import events as ev
from sts_core.config import Config
from sts_core.errors import ConfigError, PluginError
from sts_core.hookspecs import hookimpl
from sts_core.plugins import DISABLE_ENV, PluginManager
from sts_core.run import RunState
from sts_core.task import Task

FIXTURES = str(Path(__file__).parent / "plugin_fixtures")
if FIXTURES not in sys.path:
    sys.path.insert(0, FIXTURES)
from fixture_distributions import install, run_sts  # noqa: E402 - found through FIXTURES

BROKEN_REASON = "RuntimeError: sts_broken is broken on purpose"
HERE = os.path.relpath(__file__)


def line_of(code: Any, text: str) -> int:
    """The line number of the first line of ``code``'s source that contains ``text``."""
    lines, first = inspect.getsourcelines(code)
    return first + next(i for i, line in enumerate(lines) if text in line)


@pytest.fixture(autouse=True)
def no_disabled_plugins_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISABLE_ENV, raising=False)


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory sts-broken is installed in."""
    return install("sts-broken", tmp_path_factory.mktemp("broken"))


class ImportSpy(importlib.abc.MetaPathFinder):
    """Records the name of every module Python looks for; finds nothing itself."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        self.names.append(fullname)


@pytest.fixture
def with_broken_plugin(broken_site: Path, monkeypatch: pytest.MonkeyPatch) -> ImportSpy:
    """sts-broken on ``sys.path`` for this test; returns a spy on the imports that follow."""
    monkeypatch.syspath_prepend(str(broken_site))
    spy = ImportSpy()
    monkeypatch.setattr(sys, "meta_path", [spy, *sys.meta_path])
    return spy


def infos_by_name(plugins: PluginManager) -> dict[str, Any]:
    return {info.name: info for info in plugins.plugin_infos()}


# -- plugins -------------------------------------------------------------------------------------


class Greeter:
    """Registers a task type named ``name`` (the value is only a marker here)."""

    def __init__(self, name: str = "greeting") -> None:
        self.name = name

    @hookimpl
    def register_task_types(self, register: Callable[..., None]) -> None:
        register(self.name, object())


class FailsToRegister:
    @hookimpl
    def register_task_types(self, register: Callable[..., None]) -> None:
        raise RuntimeError("no licence key")


class FailsHalfwayThroughRegistering:
    @hookimpl
    def register_task_types(self, register: Callable[..., None]) -> None:
        register("half", object())
        raise RuntimeError("gave up")


class FailsToStart:
    @hookimpl
    def scheduler_started(self) -> None:
        {}["port"]


class FailsToConfigure:
    def __init__(self, error: Exception) -> None:
        self.error = error

    @hookimpl
    def configure(self, config: Any) -> None:
        raise self.error


class StartsWithoutArguments:
    """Implements ``scheduler_started`` taking none of the spec's arguments, as pluggy allows."""

    def __init__(self) -> None:
        self.started = False

    @hookimpl
    def scheduler_started(self) -> None:
        self.started = True


class Listener:
    """Records every event; optionally raises on each one after recording it."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[ev.Event] = []
        self.fail = fail

    @hookimpl
    def handle_event(self, event: ev.Event) -> None:
        self.events.append(event)
        if self.fail:
            raise ValueError(f"listener cannot handle {event.kind}")


class AsyncLifecycle:
    """Async ``scheduler_started`` / ``scheduler_stopping`` that finish only after an await."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    async def scheduler_started(self, scheduler: Any) -> None:
        await asyncio.sleep(0)
        self.calls.append(f"started {scheduler.id}")

    @hookimpl
    async def scheduler_stopping(self, scheduler: Any) -> None:
        await asyncio.sleep(0)
        self.calls.append(f"stopping {scheduler.id}")

    @hookimpl
    async def scheduler_stopped(self, scheduler: Any) -> None:
        await asyncio.sleep(0)
        self.calls.append(f"stopped {scheduler.id} running={scheduler.running}")


# -- a plugin class: one instance per manager ---------------------------------------------------------

COUNTER_MODULE = """\
from sts_core.hookspecs import hookimpl


class Counter:
    def __init__(self):
        self.configs = []

    @hookimpl
    def configure(self, config):
        self.configs.append(config)
"""


@pytest.fixture
def counter_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution ``sts-counter`` on ``sys.path`` whose ``sts`` entry point names a class."""
    (tmp_path / "sts_counter.py").write_text(COUNTER_MODULE)
    info = tmp_path / "sts_counter-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sts-counter\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[sts]\ncounter = sts_counter:Counter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_an_entry_point_naming_a_class_gets_one_instance_per_manager(counter_site):
    first, second = PluginManager(), PluginManager()
    first_config, second_config = Config(), Config()
    first.configure(first_config)
    second.configure(second_config)
    one, two = first.pm.get_plugin("counter"), second.pm.get_plugin("counter")
    assert type(one).__name__ == type(two).__name__ == "Counter" and one is not two
    assert one.configs == [first_config] and two.configs == [second_config]
    assert infos_by_name(first)["counter"].hooks == ["configure"]


def test_a_plugin_class_given_to_the_manager_is_instantiated_and_configured_even_when_late():
    class Counter:
        def __init__(self) -> None:
            self.configs: list[Any] = []

        @hookimpl
        def configure(self, config: Any) -> None:
            self.configs.append(config)

    early = PluginManager(entry_points=False, plugins=[("early", Counter)])
    early.configure("config")
    assert early.instance_of(Counter) is early.pm.get_plugin("early")
    assert early.instance_of(PluginManager) is None
    early.register("late", Counter)
    assert [early.pm.get_plugin(name).configs for name in ("early", "late")] == [["config"], ["config"]]


def test_a_plugin_class_whose_constructor_raises_is_failed_and_the_others_load(caplog):
    class NeedsALicence:
        def __init__(self) -> None:
            raise RuntimeError("no licence key")

    plugins = PluginManager(plugins=[("fussy", NeedsALicence)])
    assert "python" in plugins.task_types()
    infos = infos_by_name(plugins)
    assert (infos["fussy"].status, infos["fussy"].error) == ("failed", "RuntimeError: no licence key")
    assert "plugin 'fussy' could not be registered: RuntimeError: no licence key" in caplog.text


# -- a plugin that cannot be imported ----------------------------------------------------------------


def test_a_plugin_that_fails_to_import_is_reported_failed_and_the_others_load(with_broken_plugin):
    plugins = PluginManager()
    assert "python" in plugins.task_types()
    infos = infos_by_name(plugins)
    assert (infos["broken"].status, infos["broken"].error) == ("failed", BROKEN_REASON)
    assert (infos["broken"].distribution, infos["broken"].version) == ("sts-broken", "0.1.0")
    assert {infos[name].status for name in ("memory", "tasks", "triggers")} == {"enabled"}
    assert "sts_broken" in with_broken_plugin.names


def test_an_unknown_name_names_the_plugin_that_failed_to_load(with_broken_plugin):
    with pytest.raises(PluginError, match=rf"not loaded: broken \(failed: {BROKEN_REASON}\)"):
        PluginManager().lookup("task type", "greeting")


def test_the_cli_reports_a_broken_plugin_and_keeps_working(broken_site, tmp_path):
    listed = run_sts("plugins", site=broken_site, cwd=tmp_path)
    assert listed.returncode == 1
    broken = next(line for line in listed.stdout.splitlines() if line.startswith("broken "))
    assert f"failed: {BROKEN_REASON}" in broken
    assert "sts-broken" in broken
    assert "task_types:python" in listed.stdout
    assert "Traceback" not in listed.stdout + listed.stderr

    helped = run_sts("--help", site=broken_site, cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "usage: sts" in helped.stdout

    (tmp_path / "tasks.yaml").write_text("tasks:\n  - {name: t, function: 'sts_core.testing:noop', every: 1m}\n")
    validated = run_sts("validate", "tasks.yaml", site=broken_site, cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr


@pytest.mark.parametrize(
    ("how", "name"),
    [("config", "broken"), ("config", "sts-broken"), ("environment", "broken"), ("environment", "sts-broken")],
)
def test_a_disabled_plugin_is_never_imported(with_broken_plugin, monkeypatch, how, name):
    if how == "environment":
        monkeypatch.setenv(DISABLE_ENV, f"nothing-else {name}")
    plugins = PluginManager(disable=[name] if how == "config" else [])
    infos = infos_by_name(plugins)
    assert (infos["broken"].status, infos["broken"].error) == ("disabled", None)
    assert "sts_broken" not in with_broken_plugin.names
    assert "python" in plugins.task_types()


# -- registration ---------------------------------------------------------------------------------


def test_a_name_registered_by_two_plugins_is_an_error_naming_both():
    plugins = PluginManager(plugins=[("mine", Greeter("python"))])
    with pytest.raises(PluginError) as caught:
        plugins.task_types()
    message = str(caught.value)
    assert "task type 'python' is registered by both plugin" in message
    assert "'tasks'" in message and "'mine'" in message


def test_a_plugin_whose_register_hook_raises_is_failed_and_the_others_still_load():
    plugins = PluginManager(plugins=[("fussy", FailsToRegister()), ("friendly", Greeter())])
    assert {"python", "shell", "greeting"} <= set(plugins.task_types())
    infos = infos_by_name(plugins)
    assert infos["fussy"].status == "failed"
    assert infos["fussy"].error == (
        f"register_task_types failed at {HERE}:{line_of(FailsToRegister, 'raise')}: RuntimeError: no licence key"
    )
    assert infos["friendly"].status == infos["tasks"].status == "enabled"
    assert infos["friendly"].provides == ["task_types:greeting"]


def test_a_failing_register_hook_is_logged_once_per_process_with_its_location(caplog):
    fussy = FailsToRegister()
    caplog.set_level(logging.INFO, logger="sts.plugins")
    for _ in range(2):  # the CLI may build more than one manager
        PluginManager(entry_points=False, plugins=[("fussy", fussy)]).task_types()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == (
        f"plugin 'fussy' failed in register_task_types at {HERE}:{line_of(FailsToRegister, 'raise')}: "
        "RuntimeError: no licence key"
    )


def test_a_failing_register_hook_carries_its_traceback_at_debug(caplog):
    caplog.set_level(logging.DEBUG, logger="sts.plugins")
    PluginManager(entry_points=False, plugins=[("fussy", FailsToRegister())]).task_types()
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_sts_plugins_shows_a_failing_register_hook_in_its_listing_rather_than_logging_it(caplog):
    caplog.set_level(logging.INFO, logger="sts.plugins")
    infos = infos_by_name(PluginManager(entry_points=False, plugins=[("fussy", FailsToRegister())]))
    assert infos["fussy"].status == "failed"
    assert caplog.records == []


def test_a_failing_lifecycle_hook_is_one_line_with_its_location_and_the_traceback_only_at_debug(caplog):
    plugins = PluginManager(entry_points=False, plugins=[("fussy", FailsToStart())])
    caplog.set_level(logging.INFO, logger="sts.plugins")
    asyncio.run(plugins.scheduler_started(object()))
    caplog.set_level(logging.DEBUG, logger="sts.plugins")
    asyncio.run(plugins.scheduler_started(object()))
    at_info, at_debug = caplog.records
    assert at_info.getMessage() == (
        f"plugin 'fussy' failed in scheduler_started at {HERE}:{line_of(FailsToStart, 'port')}: KeyError: 'port'"
    )
    assert at_info.levelno == logging.ERROR and at_info.exc_info is None
    assert at_debug.getMessage() == at_info.getMessage() and at_debug.exc_info[0] is KeyError


def test_a_plugin_failing_in_configure_is_named_with_its_location():
    plugins = PluginManager(entry_points=False, plugins=[("fussy", FailsToConfigure(KeyError("token")))])
    with pytest.raises(PluginError) as caught:
        plugins.configure(object())
    assert str(caught.value) == (
        f"plugin 'fussy' failed in configure at {HERE}:{line_of(FailsToConfigure.configure, 'raise')}: "
        "KeyError: 'token'"
    )


def test_a_plugin_rejecting_its_config_section_raises_its_own_config_error():
    rejection = ConfigError("slack.webhook_url: expected a URL")
    plugins = PluginManager(entry_points=False, plugins=[("strict", FailsToConfigure(rejection))])
    with pytest.raises(ConfigError) as caught:
        plugins.configure(object())
    assert caught.value is rejection


def test_a_plugin_registered_after_configure_is_configured_too():
    seen = []

    class Late:
        @hookimpl
        def configure(self, config: Any) -> None:
            seen.append(config)

    plugins = PluginManager(entry_points=False)
    plugins.configure("the config")
    plugins.register("late", Late())
    assert seen == ["the config"]


def test_what_a_failing_register_hook_registered_before_failing_is_not_used():
    plugins = PluginManager(plugins=[("halfway", FailsHalfwayThroughRegistering())])
    assert "half" not in plugins.task_types()
    info = infos_by_name(plugins)["halfway"]
    assert info.status == "failed" and info.provides == []


def test_sts_plugins_lists_a_name_clash_instead_of_failing():
    plugins = PluginManager(plugins=[("mine", Greeter("python"))])
    info = infos_by_name(plugins)["mine"]
    assert info.status == "failed"
    assert "registered by both plugin 'tasks' and plugin 'mine'" in info.error


@pytest.mark.parametrize(
    ("kind", "name", "hint", "installed"),
    [
        ("task type", "pyhton", " (did you mean 'python'?)", ["'python'", "'shell'"]),
        ("trigger", "intervall", " (did you mean 'interval'?)", ["'cron'", "'interval'"]),
        ("backend", "zzz", "", ["'memory'"]),
    ],
)
def test_an_unknown_name_suggests_the_closest_and_lists_the_installed_ones(kind, name, hint, installed):
    with pytest.raises(PluginError) as caught:
        PluginManager().lookup(kind, name)
    message = str(caught.value)
    assert message.startswith(f"unknown {kind} {name!r}{hint}; installed: ")
    assert all(item in message.split("installed: ", 1)[1] for item in installed)
    assert ("did you mean" in message) == bool(hint)


# -- events and lifecycle hooks ----------------------------------------------------------------------


class Records(logging.Handler):
    """Keeps the records of one logger (propagation and the root logger play no part)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def event_log() -> Any:
    handler = Records()
    logger = logging.getLogger("sts.events")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def say_hello() -> str:
    return "hello"


def run_events(listener: Listener) -> list[type[ev.Event]]:
    return [type(event) for event in listener.events if isinstance(event, ev.RunEvent)]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (real time: events arrive on the scheduler's event thread)."""
    give_up = time.monotonic() + timeout
    while not condition() and time.monotonic() < give_up:
        await asyncio.sleep(0.01)


def run_one_task(make_scheduler: Any, clock: Any, *plugins: tuple[str, object]) -> list[Any]:
    """Start a scheduler with ``plugins`` added, let one task run once, wait for its two run
    events to reach the last listener, stop; return the task's runs."""
    listener = plugins[-1][1]
    assert isinstance(listener, Listener)

    async def main() -> list[Any]:
        async with make_scheduler(plugins=PluginManager(plugins=plugins)) as scheduler:
            await scheduler.add_task(Task("hello", say_hello))
            await scheduler.start()
            await clock.settle()
            clock.advance(1)
            await clock.settle()
            await until(lambda: len(run_events(listener)) >= 2)
            runs = await scheduler.runs("hello")
            await scheduler.stop()
        return runs

    return asyncio.run(main())


def test_a_listener_receives_run_started_then_run_succeeded(make_scheduler, clock):
    listener = Listener()
    runs = run_one_task(make_scheduler, clock, ("listener", listener))
    assert [run.state for run in runs] == [RunState.SUCCEEDED]
    assert run_events(listener) == [ev.RunStarted, ev.RunSucceeded]
    started, succeeded = (e for e in listener.events if isinstance(e, ev.RunEvent))
    assert started.run.id == succeeded.run.id == runs[0].id
    assert (started.run.state, succeeded.run.state) == (RunState.RUNNING, RunState.SUCCEEDED)


def test_a_listener_that_raises_is_logged_with_its_name_and_runs_go_on(make_scheduler, clock, event_log):
    noisy, listener = Listener(fail=True), Listener()
    runs = run_one_task(make_scheduler, clock, ("noisy", noisy), ("listener", listener))
    assert [run.state for run in runs] == [RunState.SUCCEEDED]
    assert run_events(listener) == [ev.RunStarted, ev.RunSucceeded]
    failures = [record.getMessage() for record in event_log.records if record.levelno == logging.ERROR]
    where = f"{HERE}:{line_of(Listener, 'raise ValueError')}"
    for kind in ("run.started", "run.succeeded"):
        assert (
            f"plugin 'noisy' failed in handle_event ({kind}) at {where}: ValueError: listener cannot handle {kind}"
        ) in failures


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_a_listener_failure_carries_its_traceback_only_at_debug(make_scheduler, clock, event_log, level):
    logger = logging.getLogger("sts.events")
    old_level = logger.level
    logger.setLevel(level)
    try:
        run_one_task(make_scheduler, clock, ("noisy", Listener(fail=True)), ("listener", Listener()))
    finally:
        logger.setLevel(old_level)
    assert event_log.records
    for record in event_log.records:
        assert (record.exc_info is not None) == (level == logging.DEBUG)


def test_async_lifecycle_hooks_are_awaited(make_scheduler):
    lifecycle = AsyncLifecycle()

    async def main() -> list[str]:
        scheduler = make_scheduler(plugins=PluginManager(plugins=[("lifecycle", lifecycle)]))
        await scheduler.start()
        after_start = list(lifecycle.calls)
        await scheduler.stop()
        assert after_start == [f"started {scheduler.id}"]
        return lifecycle.calls

    calls = asyncio.run(main())
    assert [call.split()[0] for call in calls] == ["started", "stopping", "stopped"]
    assert calls[2].endswith("running=False")


class SchedulerAwareListener:
    """Records which scheduler emitted each run event."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def handle_event(self, event: ev.Event, scheduler: Any) -> None:
        if isinstance(event, ev.RunSucceeded):
            self.seen.append((event.run.task_name, scheduler.id))


def test_listeners_are_told_which_of_several_schedulers_emitted_an_event(make_scheduler, clock):
    listener = SchedulerAwareListener()

    async def main() -> list[str]:
        plugins = PluginManager(plugins=[("aware", listener)])
        first, second = make_scheduler(plugins=plugins), make_scheduler(plugins=plugins)
        for name, scheduler in (("a", first), ("b", second)):
            await scheduler.add_task(Task(name, "sts_core.testing:noop"))
            await scheduler.start()
        await clock.settle()
        for scheduler in (first, second):
            await scheduler.wait_idle()
            await scheduler.stop()
        return [first.id, second.id]

    ids = asyncio.run(main())
    assert sorted(listener.seen) == [("a", ids[0]), ("b", ids[1])]


class Switchable(AsyncLifecycle, Listener):
    """A plugin the user switches on in config: its section has an ``enabled`` key."""

    def __init__(self) -> None:
        AsyncLifecycle.__init__(self)
        Listener.__init__(self)
        self.configured: list[Any] = []

    @hookimpl
    def register_config_sections(self, register: Any) -> None:
        register("pager", {"enabled": False, "team": "ops"})

    @hookimpl
    def configure(self, config: Any) -> None:
        self.configured.append(config.get("pager.team"))


@pytest.mark.parametrize("enabled", [False, True])
def test_a_plugin_switched_off_in_config_gets_no_events_and_no_lifecycle_calls(make_scheduler, enabled):
    plugin = Switchable()

    async def main() -> None:
        plugins = PluginManager(plugins=[("pager", plugin)])
        scheduler = make_scheduler(plugins=plugins, pager={"enabled": enabled})
        assert scheduler.engine.events.active is enabled  # no events are even built when off
        await scheduler.add_task(Task("t", "sts_core.testing:noop"))
        await scheduler.start()
        await scheduler.wait_idle()
        await scheduler.stop()

    asyncio.run(main())
    assert plugin.configured == ["ops"]  # configured either way: its section is still checked
    assert bool(plugin.calls) is enabled
    assert bool(plugin.events) is enabled


def test_schedulers_sharing_a_plugin_manager_each_switch_a_plugin_on_or_off(make_scheduler):
    plugin = Switchable()

    async def main() -> tuple[str, str]:
        plugins = PluginManager(plugins=[("pager", plugin)])
        on = make_scheduler(plugins=plugins, pager={"enabled": True})
        off = make_scheduler(plugins=plugins, pager={"enabled": False})  # configured last
        for scheduler in (on, off):
            await scheduler.start()
        for scheduler in (on, off):
            await scheduler.stop()
        return on.id, off.id

    on_id, _ = asyncio.run(main())
    assert [call.split()[:2] for call in plugin.calls] == [["started", on_id], ["stopping", on_id], ["stopped", on_id]]


def test_a_hook_implementation_may_take_fewer_arguments_than_the_spec():
    plugin = StartsWithoutArguments()
    plugins = PluginManager(entry_points=False, plugins=[("terse", plugin)])
    asyncio.run(plugins.scheduler_started(object()))
    assert plugin.started
