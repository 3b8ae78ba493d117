"""A task compiled for execution: its trigger, task type and effective settings.

Compiling once per task version keeps the per-run path free of lookups: the engine reads
plain attributes of a ``TaskPlan`` on every fire and every attempt.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from sts_core.errors import TaskLoadError, TaskNotFoundError
from sts_core.interfaces import TaskType, Trigger
from sts_core.plugins import PluginManager
from sts_core.retry import RetryPolicy
from sts_core.task import Task
from sts_core.validation import compile_trigger

log = logging.getLogger("sts.engine")


@attrs.define(slots=True)
class TaskPlan:
    """Everything the engine needs to fire and run one task version.

    A stored task this process cannot fully load still gets a plan, so that it stays scheduled:
    ``trigger_error`` says why it cannot be fired here (its trigger kind or time zone is missing),
    ``load_error`` why it cannot be run here (its task type or function cannot be loaded); firing
    needs only the trigger, and a worker tries to load the rest again before each run.
    """

    task: Task
    trigger: Trigger | None
    task_type: TaskType | None
    prepared: Any
    retry: RetryPolicy
    timeout: float | None
    misfire: str
    misfire_grace: float
    jitter: float
    settings: Mapping[str, Any]
    parents: frozenset[str]
    trigger_error: str | None = None
    load_error: str | None = None

    @property
    def problem(self) -> str | None:
        """Why this process cannot fire or run the task, or None."""
        return self.trigger_error or self.load_error


def _pick(task_value: Any, config_value: Any) -> Any:
    return config_value if task_value is None else task_value


# Shared by every plan whose task has no parents / the same settings: one object, not one per
# task (an empty frozenset alone is 216 bytes). Settings are read-only for that reason.
_NO_PARENTS: frozenset[str] = frozenset()
_SETTINGS: dict[tuple[Any, ...], Mapping[str, Any]] = {}


def _shared_settings(executor: str, kill_grace: float | None, timezone: str) -> Mapping[str, Any]:
    key = (executor, kill_grace, timezone)
    settings = _SETTINGS.get(key)
    if settings is None:
        if len(_SETTINGS) >= 1024:  # distinct combinations are few; never let them pile up
            _SETTINGS.clear()
        settings = _SETTINGS[key] = MappingProxyType({"executor": executor, "kill_grace": kill_grace,
                                                      "timezone": timezone})
    return settings


@attrs.frozen
class PlanDefaults:
    """The config values a task falls back to, read once per scheduler (not once per task)."""

    timezone: str
    retry: RetryPolicy
    executor: str
    kill_grace: float | None
    timeout: float | None
    misfire: str
    misfire_grace: float

    @classmethod
    def from_config(cls, config: Any) -> PlanDefaults:
        """Read the task defaults from ``config``."""
        return cls(
            timezone=config.get("timezone", "UTC"),
            retry=RetryPolicy(
                retries=config.get("retries", 0),
                delay=config.seconds("retry_delay"),
                backoff=float(config.get("backoff", 1.0)),
                max_delay=config.seconds("max_retry_delay"),
                jitter=config.seconds("retry_jitter") or 0.0,
            ),
            executor=config.get("executor.type", "thread"),
            kill_grace=config.seconds("executor.kill_grace"),
            timeout=config.seconds("timeout"),
            misfire=config.get("misfire", "coalesce"),
            misfire_grace=config.seconds("misfire_grace_time"),
        )


def compile_plan(
    task: Task,
    *,
    defaults: PlanDefaults,
    plugins: PluginManager,
    resolve_function: Callable[[Any], Callable[..., Any]],
) -> TaskPlan:
    """Build the plan of ``task`` from the task, the defaults and the plugins.

    A task validated in this process always compiles. A task stored by another process may
    name a trigger, task type or function this process lacks: its plan then says so in
    ``trigger_error`` or ``load_error`` (logged once here) rather than failing.
    """
    trigger_error = None
    try:
        trigger = compile_trigger(task, plugins, defaults.timezone)
    except Exception as exc:  # noqa: BLE001 - a stored task this process cannot fire, see TaskPlan
        trigger, trigger_error = None, f"its trigger cannot be built here: {exc}"
    try:
        task_type, prepared = load_code(task, plugins, resolve_function)
        load_error = None
    except TaskLoadError as exc:
        task_type, prepared, load_error = None, None, str(exc)
    undeclared = task.undeclared_options
    if undeclared:  # stored by a process with a plugin this one lacks: the option may be its trigger's
        missing = f"no plugin here declares its option(s) {', '.join(map(repr, undeclared))}"
        if trigger is None and not task.parent_tasks:
            trigger_error = trigger_error or f"its trigger cannot be built here: {missing}"
        load_error = load_error or f"cannot be loaded in this process: {missing}"
    for problem in (trigger_error, load_error):
        if problem is not None:
            log.warning("task %r (version %d): %s; it stays scheduled and each of its runs that cannot be "
                        "loaded is recorded failed with this error", task.name, task.version, problem)
    retry = defaults.retry
    overrides = {
        name: value
        for name, value in (
            ("retries", task.retries),
            ("delay", task.retry_delay),
            ("backoff", task.backoff),
            ("max_delay", task.max_retry_delay),
            ("jitter", task.retry_jitter),
        )
        if value is not None
    }
    if overrides:
        retry = attrs.evolve(retry, **overrides)
    # a task type's own option may override the executor (python's executor)
    settings = _shared_settings(defaults.executor, defaults.kill_grace, task.timezone or defaults.timezone)
    return TaskPlan(
        task=task,
        trigger=trigger,
        task_type=task_type,
        prepared=prepared,
        retry=retry,
        timeout=_pick(task.timeout, defaults.timeout),
        misfire=_pick(task.misfire, defaults.misfire),
        misfire_grace=_pick(task.misfire_grace_time, defaults.misfire_grace),
        jitter=task.jitter or 0.0,
        settings=settings,
        parents=frozenset(task.parent_tasks) if task.parent_tasks else _NO_PARENTS,
        trigger_error=trigger_error,
        load_error=load_error,
    )


def load_code(
    task: Task, plugins: PluginManager, resolve_function: Callable[[Any], Callable[..., Any]]
) -> tuple[TaskType, Any]:
    """The task type of ``task`` and what it prepared (its function, resolved); raises
    ``TaskLoadError`` saying what is missing in this process."""
    try:
        task_type = plugins.lookup("task type", task.type).value
        return task_type, task_type.prepare(task, resolve_function)
    except Exception as exc:
        raise TaskLoadError(f"cannot be loaded in this process: {exc}") from exc


def reload_code(plan: TaskPlan, plugins: PluginManager, resolve_function: Callable[[Any], Callable[..., Any]]) -> None:
    """Try again to load the task type and function of a plan whose ``load_error`` is set (a module
    may have become importable since); raises ``TaskLoadError`` when it still cannot be loaded."""
    plan.task_type, plan.prepared = load_code(plan.task, plugins, resolve_function)
    plan.load_error = None


#: How many replaced versions ``TaskPlans`` keeps compiled for runs queued or in flight (see there).
OLDER_VERSIONS_KEPT = 256


class TaskPlans:
    """The plans of the tasks a scheduler knows: the current version of each task, older
    versions that runs in flight still use, and the parent -> children index."""

    def __init__(
        self,
        compile: Callable[[Task], TaskPlan],
        load_task: Callable[[str, int], Awaitable[Task | None]],
    ) -> None:
        self._compile = compile
        self._load_task = load_task
        # Replaced versions, least recently asked for first. Runs of a replaced version may still be
        # queued (in the broker, perhaps by another process) or in flight, and no process knows which
        # versions those are; so the most recent OLDER_VERSIONS_KEPT stay compiled, and a run of one
        # evicted from here gets its plan compiled again from the store. Current plans live in
        # ``_current`` only, so a scheduler with many tasks does not push them out.
        self._by_version: OrderedDict[tuple[str, int], TaskPlan] = OrderedDict()
        self._current: dict[str, TaskPlan] = {}
        self._children: dict[str, set[str]] = {}
        self._problems: dict[str, str] = {}

    def install(self, plan: TaskPlan) -> None:
        """Make ``plan`` the current version of its task and index its parents."""
        task = plan.task
        self.uninstall(task.name)
        self._current[task.name] = plan
        self._by_version.pop((task.name, task.version), None)
        for parent in plan.parents:
            self._children.setdefault(parent, set()).add(task.name)
        self.note_problem(plan)

    def note_problem(self, plan: TaskPlan) -> None:
        """Keep ``problems()`` current after ``plan`` was installed or loaded again."""
        name = plan.task.name
        if plan.problem is None:
            self._problems.pop(name, None)
        elif self._current.get(name) is plan:
            self._problems[name] = plan.problem

    def problems(self) -> Mapping[str, str]:
        """The tasks whose current plan this process cannot fire or run, with the reason (a copy)."""
        return dict(self._problems)

    def uninstall(self, name: str) -> None:
        """Forget the current plan of ``name`` (it stays, as an older version, for runs in flight)."""
        plan = self._current.pop(name, None)
        self._problems.pop(name, None)
        if plan is not None:
            self._keep_older(plan)
            for parent in plan.parents:
                self._children.get(parent, set()).discard(name)

    def current(self, name: str) -> TaskPlan | None:
        """The plan of the task's current version, or None."""
        return self._current.get(name)

    def require(self, name: str) -> TaskPlan:
        """The current plan of ``name``; raises ``TaskNotFoundError``."""
        plan = self._current.get(name)
        if plan is None:
            raise TaskNotFoundError(f"no task named {name!r}")
        return plan

    def __len__(self) -> int:
        """How many tasks have a current plan."""
        return len(self._current)

    def items(self) -> Iterator[tuple[str, TaskPlan]]:
        """``(name, current plan)`` pairs (a snapshot, safe to change the plans meanwhile)."""
        return iter(list(self._current.items()))

    def children_of(self, name: str) -> list[str]:
        """Names of the tasks that list ``name`` in ``parent_tasks``, sorted."""
        return sorted(self._children.get(name, ()))

    async def for_version(self, name: str, version: int) -> TaskPlan | None:
        """The plan of one version of a task, compiled from the store when not cached."""
        plan = self._current.get(name)
        if plan is not None and plan.task.version == version:
            return plan
        key = (name, version)
        plan = self._by_version.get(key)
        if plan is not None:
            self._by_version.move_to_end(key)
            return plan
        task = await self._load_task(name, version)
        if task is None:
            return None
        plan = self._compile(task)
        current = self._current.get(name)
        if current is None or current.task.version != version:  # the task may have changed meanwhile
            self._keep_older(plan)
        return plan

    def _keep_older(self, plan: TaskPlan) -> None:
        self._by_version[(plan.task.name, plan.task.version)] = plan
        self._by_version.move_to_end((plan.task.name, plan.task.version))
        while len(self._by_version) > OLDER_VERSIONS_KEPT:
            self._by_version.popitem(last=False)
