"""Checks on tasks that need plugins and context: trigger kinds, task types, names, dependencies.

``Task`` checks its own options when it is built; what it cannot know is checked here: is
the trigger kind installed and does it accept the spec, is the task type installed and does
it accept the task, are names unique, does every parent exist, and is the dependency graph
free of cycles. Every check is linear in the number of tasks and parents, so a batch of
10,000 tasks validates in well under a second.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sts_core.converters import check_timezone
from sts_core.errors import PluginError, Problem, TaskValidationError, did_you_mean, short_repr, short_text
from sts_core.functions import import_errors_once
from sts_core.interfaces import Trigger
from sts_core.options import installed_options
from sts_core.plugins import PluginManager
from sts_core.task import Task

#: At most this many unknown parents get a "did you mean": each hint scans every task name.
_MAX_PARENT_HINTS = 50
#: Cycles longer than this are shown with their middle elided.
_MAX_CYCLE_SHOWN = 12

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
    first_index = _first_index_by_name(tasks, problems)
    graph = {**existing, **{name: tasks[i] for name, i in first_index.items()}}
    problems.extend(_unknown_parent_problems(tasks, graph))
    problems.extend(_cycle_problems(graph, first_index))
    problems.sort(key=lambda pair: pair[0])
    return problems


def reported_already(problem: Problem, left_out: frozenset[str]) -> bool:
    """Whether a plugin check's ``problem`` with a task built without the options ``left_out``
    (``sts_core.task.task_from_valid_options``) is a consequence of leaving them out: those options are
    reported already, and "function is required" after a malformed function says nothing new."""
    key = re.split(r"[.\[]", problem.key_path, maxsplit=1)[0]
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


# --- names and dependencies ---------------------------------------------------------------------


def _first_index_by_name(tasks: Sequence[Task], problems: list[tuple[int, Problem]]) -> dict[str, int]:
    """Index of each name's first task; a problem for every later task of the same name."""
    first: dict[str, int] = {}
    for index, task in enumerate(tasks):
        earlier = first.setdefault(task.name, index)
        if earlier != index:
            message = f"duplicate task name {task.name!r} (already used by the task at index {earlier})"
            problems.append((index, Problem("name", message)))
    return first


def _unknown_parent_problems(tasks: Sequence[Task], graph: Mapping[str, Task]) -> Iterator[tuple[int, Problem]]:
    hints_left = _MAX_PARENT_HINTS
    for index, task in enumerate(tasks):
        for parent in task.parent_tasks:
            if parent in graph:
                continue
            hint = ""
            if hints_left > 0:
                hints_left -= 1
                hint = did_you_mean(parent, graph)
            yield index, Problem("parent_tasks", f"unknown parent {short_repr(parent)}{hint}")


def _cycle_problems(graph: Mapping[str, Task], new: Mapping[str, int]) -> Iterator[tuple[int, Problem]]:
    """One problem per dependency cycle that involves a task of the batch.

    Each strongly connected component reachable from the batch is found once (Tarjan); for
    a component holding a new task, a shortest cycle through its first new task is shown.
    """
    for component in _strongly_connected(graph, list(new)):
        starts = [(new[name], name) for name in component if name in new]
        if not starts:
            continue  # a cycle among existing tasks only: not this batch's doing
        index, start = min(starts)
        if len(component) == 1 and start not in graph[start].parent_tasks:
            continue
        cycle = _shortest_cycle(graph, start, set(component))
        yield index, Problem(
            "parent_tasks", f"dependency cycle {_render_cycle(cycle)} (each task lists the next as a parent)"
        )


def _parents(graph: Mapping[str, Task], name: str) -> Iterator[str]:
    return (p for p in graph[name].parent_tasks if p in graph)


def _strongly_connected(graph: Mapping[str, Task], roots: list[str]) -> Iterator[list[str]]:
    """Tarjan's algorithm without recursion, over the nodes reachable from ``roots``."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    for root in roots:
        if root in order:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, _parents(graph, root))]
        order[root] = low[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in order:
                    order[child] = low[child] = len(order)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, _parents(graph, child)))
                elif child in on_stack:
                    low[node] = min(low[node], order[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == order[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                yield component


def _shortest_cycle(graph: Mapping[str, Task], start: str, members: set[str]) -> list[str]:
    """A shortest path start -> ... -> start inside one strongly connected component."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for parent in _parents(graph, node):
            if parent not in members:
                continue
            if parent == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if parent not in came_from:
                came_from[parent] = node
                queue.append(parent)
    return [start, start]  # unreachable for a true component; keeps the type simple


def _render_cycle(cycle: list[str]) -> str:
    if len(cycle) > _MAX_CYCLE_SHOWN:
        head, tail = cycle[: _MAX_CYCLE_SHOWN // 2], cycle[-(_MAX_CYCLE_SHOWN // 2 - 1) :]
        cycle = [*head, f"... ({len(cycle) - len(head) - len(tail)} more)", *tail]
    return " -> ".join(cycle)
