"""Checks on tasks that need plugins and context: trigger kinds, task types, alerts, names, dependencies.

``Task`` checks its own options when it is built; what it cannot know is checked here: is
the trigger kind installed and does it accept the spec, is the task type installed and does
it accept the task, do its alerts name installed alerting plugins that accept them; and,
through ``sts_core.dependencies``, are names unique, does every parent exist, and is the
dependency graph free of cycles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sts_core.converters import check_timezone
from sts_core.dependencies import dependency_problems
from sts_core.errors import PluginError, Problem, TaskValidationError
from sts_core.functions import import_errors_once
from sts_core.interfaces import Trigger
from sts_core.options import installed_options
from sts_core.plugins import PluginManager
from sts_core.task import Task, root_key
from sts_core.wording import did_you_mean, short_repr, short_text

ResolveFunction = Callable[[Any], Callable[..., Any]]


@import_errors_once()  # a broken module is imported, and reported, once per batch
def check_tasks(
    tasks: Sequence[Task],
    *,
    plugins: PluginManager,
    resolve_function: ResolveFunction,
    existing: Mapping[str, Task] = {},
    default_timezone: str = "UTC",
) -> list[tuple[int, Problem]]:
    """Problems with ``tasks`` as a batch to be added to a scheduler that holds ``existing``.

    Returns ``(index into tasks, Problem)`` pairs, each Problem's key path relative to its
    task; an empty list means the whole batch may be applied. A task in ``tasks`` replaces
    the existing task of the same name. Checked: the trigger kind is installed and accepts
    the spec, the task type is installed and accepts the task, each ``alerts`` entry names an
    installed alerting plugin that accepts its value, names are unique within
    ``tasks``, every parent exists, and no dependency cycle runs through the batch.
    """
    problems: list[tuple[int, Problem]] = []
    zones = _ZoneCache(default_timezone)
    for index, task in enumerate(tasks):
        _, trigger_problem = _build_trigger(task, plugins, zones)
        if trigger_problem is not None:
            problems.append((index, trigger_problem))
        problems.extend((index, p) for p in _task_type_problems(task, plugins, resolve_function))
        if task.alerts:
            problems.extend((index, p) for p in _alert_problems(task, plugins))
    problems.extend(dependency_problems(tasks, existing))
    problems.sort(key=lambda pair: pair[0])
    return problems


def reported_already(problem: Problem, left_out: frozenset[str]) -> bool:
    """Whether a plugin check's ``problem`` with a task built without the options ``left_out``
    (``sts_core.task.task_from_valid_options``) is a consequence of leaving them out: those options are
    reported already, and "function is required" after a malformed function says nothing new."""
    key = root_key(problem.key_path)
    return key in left_out or ("type" in left_out and _checked_by_task_type(key))


def _checked_by_task_type(key: str) -> bool:
    """Whether the task type checks ``key``: a task whose ``type`` was invalid is checked as a
    python task, and what that finds about these options says nothing about the intended type."""
    return key in ("type", "params") or key in installed_options().task_type_options


def compile_trigger(task: Task, plugins: PluginManager, default_timezone: str = "UTC") -> Trigger | None:
    """Build the task's trigger through its plugin; None for a task without a trigger.

    Raises ``TaskValidationError`` naming the task, the option and what was expected when the
    trigger kind is not installed or rejects the spec.
    """
    trigger, problem = _build_trigger(task, plugins, _ZoneCache(default_timezone))
    if problem is not None:
        raise TaskValidationError([problem], source=f"task {task.name!r}")
    return trigger


# --- triggers and task types ------------------------------------------------------------------


class _ZoneCache:
    """Time zones by name, with the default's failure reported as a problem, not raised."""

    def __init__(self, default: str) -> None:
        self.default = default
        self._zones: dict[str, ZoneInfo | str] = {}

    def get(self, name: str | None) -> ZoneInfo | str:
        """The zone, or the reason it is unknown."""
        name = name or self.default
        zone = self._zones.get(name)
        if zone is None:
            try:
                zone = check_timezone(name)
            except ValueError as exc:
                zone = f"the default time zone is invalid: {exc}"
            self._zones[name] = zone
        return zone


def _build_trigger(task: Task, plugins: PluginManager, zones: _ZoneCache) -> tuple[Trigger | None, Problem | None]:
    kind = task.trigger_kind
    if kind is None:
        return None, None
    key = task.trigger_option or "trigger"
    try:
        registration = plugins.lookup("trigger", kind)
    except PluginError as exc:
        if key == "trigger":
            return None, Problem("trigger.kind", str(exc))
        return None, Problem(key, f"needs trigger kind {short_repr(kind)}: {exc}")
    zone = zones.get(task.timezone)
    if isinstance(zone, str):
        return None, Problem("timezone", zone)
    try:
        trigger = registration.value(task.trigger_spec(), zone)
        trigger.first_fire(datetime.now(UTC))  # a time past year 9999 fails here, not once stored
        return trigger, None
    except OverflowError as exc:
        return None, Problem(key, f"no first fire time can be computed ({exc}); expected times before the year 9999")
    except ValueError as exc:
        return None, Problem(key, str(exc))
    except Exception as exc:  # noqa: BLE001 - a plugin bug must not escape as a traceback
        return None, Problem(
            key, f"trigger kind {kind!r} (plugin {registration.plugin!r}) failed: "
                 f"{type(exc).__name__}: {short_text(str(exc))}"
        )


def _task_type_problems(task: Task, plugins: PluginManager, resolve_function: ResolveFunction) -> list[Problem]:
    try:
        registration = plugins.lookup("task type", task.type)
    except PluginError as exc:
        return [Problem("type", str(exc))]
    try:
        found = registration.value.validate(task, resolve_function)
    except Exception as exc:  # noqa: BLE001 - a plugin bug must not escape as a traceback
        return [
            Problem(
                "type",
                f"task type {task.type!r} (plugin {registration.plugin!r}) failed to validate the task: "
                f"{type(exc).__name__}: {short_text(str(exc))}",
            )
        ]
    return [_as_problem(item) for item in found or ()]


def _alert_problems(task: Task, plugins: PluginManager) -> list[Problem]:
    known = plugins.alert_options()
    problems = []
    for name, value in task.alerts.items():
        registration = known.get(name)
        if registration is None:
            installed = ", ".join(sorted(known)) or "none (no alerting plugin is installed and enabled)"
            message = f"unknown alerting plugin {short_repr(name)}{did_you_mean(name, known)}; installed: {installed}"
            problems.append(Problem(f"alerts.{short_text(name)}", message))
            continue
        try:
            found = registration.value(value)
        except Exception as exc:  # noqa: BLE001 - a plugin bug must not escape as a traceback
            failure = f"{type(exc).__name__}: {short_text(str(exc))}"
            found = [("", f"plugin {registration.plugin!r} failed to check it: {failure}")]
        for item in found or ():
            problem = _as_problem(item)
            path = f"alerts.{name}.{problem.key_path}" if problem.key_path else f"alerts.{name}"
            problems.append(Problem(path, problem.message))
    return problems


def _as_problem(item: Any) -> Problem:
    if isinstance(item, Problem):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return Problem(str(item[0]), str(item[1]))
    return Problem("", str(item))
