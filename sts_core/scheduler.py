"""The scheduler for asyncio applications: ``AsyncTaskScheduler``.

``sts_core.blocking.TaskScheduler`` is its blocking twin for plain scripts.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

from sts_core import events as ev
from sts_core.backends import build_backend
from sts_core.clock import Clock, SystemClock
from sts_core.config import Config
from sts_core.engine import Engine
from sts_core.errors import (
    Problem,
    SchedulerStateError,
    TaskExistsError,
    TaskNotFoundError,
    TaskValidationError,
)
from sts_core.functions import FunctionRegistry, import_errors_once
from sts_core.health import Health
from sts_core.plans import TaskPlan
from sts_core.plugins import PluginManager
from sts_core.run import Run, RunState, fire_id, new_run_id
from sts_core.task import Task
from sts_core.taskfile import validate_task_file
from sts_core.validation import check_tasks

log = logging.getLogger("sts.scheduler")
T = TypeVar("T")
#: fire_now reads a task changing under it again, up to this many times.
_FIRE_NOW_ATTEMPTS = 5
TaskRef = Task | str


def _name_of(task: TaskRef) -> str:
    return task.name if isinstance(task, Task) else task


def _states(state: str | RunState | Iterable[str | RunState] | None) -> list[RunState] | None:
    if state is None:
        return None
    values = [state] if isinstance(state, (str, RunState)) else list(state)
    try:
        return [RunState(v) for v in values]
    except ValueError:
        allowed = ", ".join(s.value for s in RunState)
        raise ValueError(f"unknown run state in {values!r}; expected one of {allowed}") from None


class AsyncTaskScheduler:
    """The scheduler for applications that own their asyncio loop.

    ``async with AsyncTaskScheduler(Config()) as scheduler: await scheduler.add_task(...)``;
    every method is a coroutine except ``register_function``.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        clock: Clock | None = None,
        plugins: PluginManager | None = None,
    ) -> None:
        self.config = config if config is not None else Config()
        self.plugins = plugins or PluginManager(disable=self.config.get("plugins.disable") or ())
        self.config.validate_sections(self.plugins)
        self.plugins.configure(self.config)
        self.clock: Clock = clock or SystemClock()
        self.functions = FunctionRegistry()
        self.id = secrets.token_hex(4)
        self.backend = build_backend(self.plugins, self.config, self.clock)
        self.engine = Engine(
            config=self.config,
            plugins=self.plugins,
            backend=self.backend,
            clock=self.clock,
            resolve_function=self.functions.resolve,
            scheduler_id=self.id,
            owner=self,
        )
        self._opened = False
        self._running = False

    # -- setup -------------------------------------------------------------------------------------

    def register_function(self, name: str, function: Callable[..., Any]) -> None:
        """Let tasks refer to ``function`` by ``name`` (``function: name`` in a task file)."""
        self.functions.register(name, function)

    async def open(self) -> None:
        """Connect the backend and load the tasks it already holds (called by ``start``)."""
        if self._opened:
            return
        await self.backend.store.open()
        try:
            await self.backend.broker.open()
        except BaseException:
            await self.backend.store.close()  # a separate broker failed: leave nothing open
            raise
        self._opened = True
        with import_errors_once():  # tasks sharing a module that cannot be imported: one error, not one each
            for task in await self.backend.store.list_tasks():
                try:
                    self.engine.plans.install(self.engine.compile(task))
                except Exception as exc:  # noqa: BLE001 - one bad stored task must not stop the others
                    log.error("stored task %r cannot be loaded: %s", task.name, exc)

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._running

    def health(self) -> Health:
        """How this process is doing: running, its roles, runs in flight here, and when each
        loop was last seen alive. Cheap, and safe to call from any thread (a metrics server's)."""
        return self.engine.health(running=self._running)

    # -- backend reads for plugins (``SchedulerView``) ---------------------------------------------

    @property
    def shared_backend(self) -> bool:
        """True when the backend is shared between processes (such as redis): other processes
        see and change the same tasks and runs."""
        return self.engine.shared

    async def check_backend(self) -> None:
        """Ask the backend's store a cheap question (its earliest due time); raises what the
        backend raised when it cannot answer. For readiness checks."""
        await self.backend.store.next_due_time()

    async def queue_counts(self) -> dict[str, int] | None:
        """Runs in the broker by state: ``ready`` (due, waiting for a worker), ``delayed`` (due
        later: retries, scheduled deliveries), ``leased`` (held by a worker) and ``dead``
        (dead-lettered); None when the broker does not count them by state (``queue_depth()``)."""
        return await self.engine.steps.queue_counts()

    async def queue_depth(self) -> int:
        """How many runs wait in the broker (ready and delayed)."""
        return await self.backend.broker.depth()

    # -- tasks -------------------------------------------------------------------------------------

    async def add_task(self, task: Task, *, replace: bool = False, keep_paused: bool = True) -> Task:
        """Store ``task`` and schedule it; returns the stored task with its version.

        A name that exists is an error unless ``replace`` is true, which stores the task as the
        next version of that name; a definition equal to the stored one changes nothing (same
        version and next fire time), so an application may add its tasks at every start. With
        ``keep_paused`` a paused task added again as it was defined (``enabled`` true, the default)
        stays paused: ``resume_task`` resumes it. Raises ``TaskValidationError`` when the task is
        invalid (nothing is stored then).
        """
        return (await self.add_tasks([task], replace=replace, keep_paused=keep_paused))[0]

    async def add_tasks(
        self, tasks: Sequence[Task], *, replace: bool = False, keep_paused: bool = True
    ) -> list[Task]:
        """Add several tasks all or nothing (one invalid task means none is stored); as ``add_task``."""
        return await self._add_tasks(tasks, replace=replace, keep_paused=keep_paused)

    async def _add_tasks(
        self, tasks: Sequence[Task], *, replace: bool, keep_paused: bool, checked: bool = False
    ) -> list[Task]:
        """``checked``: ``tasks`` were just validated against the stored tasks (a task file), not again."""
        await self.open()
        tasks = list(tasks)
        for task in tasks:
            if not isinstance(task, Task):
                raise TypeError(f"add_task() takes a Task, e.g. Task('name', function=...), not {task!r}")
        existing = await self._stored_around(tasks)
        if not replace:
            taken = [task.name for task in tasks if task.name in existing]
            if taken:
                raise TaskExistsError(
                    f"task {taken[0]!r} already exists; pass replace=True to store a new version"
                )
        problems = [] if checked else self._check(tasks, existing)
        if any(p.message.startswith("unknown parent") for _, p in problems):
            # Rare, and worth a "did you mean" among every stored task: check again against them all.
            problems = self._check(tasks, {task.name: task for task in await self.backend.store.list_tasks()})
        if problems:
            raise TaskValidationError(
                [Problem(f"{tasks[i].name}.{p.key_path}" if p.key_path else tasks[i].name, p.message)
                 for i, p in problems]
            )
        # A task stored with the same definition is left as it is (version and next fire time):
        # an application that adds its tasks at every start must not delay them each time.
        unchanged = {task.name: existing[task.name] for task in tasks
                     if task.name in existing and _same_definition(existing[task.name], task, keep_paused)}
        changed = [task for task in tasks if task.name not in unchanged]
        for name, task in unchanged.items():
            self.engine.apply_stored(name, task)  # known here too, if another process stored it
        plans = [self.engine.compile(task) for task in changed]
        firsts = [self.engine.first_fire(plan) for plan in plans]  # checked by validation: cannot fail
        stored = await self.backend.store.put_tasks(changed, replace=replace) if changed else []
        for plan, task in zip(plans, stored, strict=True):
            plan.task = task
            self.engine.plans.install(plan)
        if plans:
            await self.engine.schedule_first_many(list(zip(plans, firsts, strict=True)))
        if self.engine.events.active:
            for task in stored:
                self.engine.events.emit(ev.TaskAdded(self.clock.now(), task))
        by_name = {task.name: task for task in stored} | unchanged
        return [by_name[task.name] for task in tasks]

    async def check_task(self, task: Task) -> list[Problem]:
        """What ``add_task(task, replace=True)`` would refuse in ``task`` (its trigger, task type,
        alerts, parents and dependency cycles), without storing anything; empty when nothing.
        Key paths are relative to the task. Like ``add_task``, this imports the task's function."""
        await self.open()
        return [problem for _, problem in self._check([task], await self._stored_around([task]))]

    async def _stored_around(self, tasks: Sequence[Task]) -> dict[str, Task]:
        """The stored tasks a batch is checked against: those of the batch's names and, step by step,
        every parent they lead to (a dependency cycle through the batch runs along them), not every
        stored task: adding to a million tasks costs what adding to a few does."""
        get_tasks = self.engine.steps.get_tasks
        found: dict[str, Task] = {}
        asked: set[str] = set()
        wanted = {task.name for task in tasks} | {parent for task in tasks for parent in task.parent_tasks}
        while wanted:
            asked |= wanted
            stored = await get_tasks(sorted(wanted))
            found.update(stored)
            wanted = {parent for task in stored.values() for parent in task.parent_tasks} - asked
        return found

    async def load_task_file(self, path: str | os.PathLike[str]) -> list[Task]:
        """Validate a task file and add its tasks all or nothing; tasks already stored with the
        same definition are left as they are, changed ones are stored as a new version. Returns
        the file's tasks as stored (with their versions)."""
        await self.open()
        existing = {task.name: task for task in await self.backend.store.list_tasks()}
        tasks = validate_task_file(
            Path(path),
            plugins=self.plugins,
            resolve_function=self.functions.resolve,
            existing=existing,
            default_timezone=self.engine.defaults.timezone,
        )
        # add_tasks leaves unchanged tasks as they are too; sorted out here, they are not validated again
        changed = [t for t in tasks if t.name not in existing or not _same_definition(existing[t.name], t, True)]
        # validate_task_file ran every check add_tasks makes, against every stored task: not twice
        stored = ({task.name: task for task in await self._add_tasks(changed, replace=True, keep_paused=True,
                                                                     checked=True)} if changed else {})
        return [stored.get(task.name) or existing[task.name] for task in tasks]

    async def get_task(self, name: str, version: int | None = None) -> Task | None:
        """The current version of the task named ``name`` (or the given stored ``version``), or None."""
        await self.open()
        return await self.backend.store.get_task(name, version)

    async def list_tasks(self) -> list[Task]:
        """Every stored task (current versions), sorted by name."""
        await self.open()
        return sorted(await self.backend.store.list_tasks(), key=lambda task: task.name)

    async def next_fire_time(self, name: str) -> Any:
        """When the task fires next (UTC), or None."""
        await self.open()
        return await self.backend.store.get_next_fire(name)

    async def remove_task(self, task: TaskRef) -> None:
        """Remove a task and its scheduled times; a run in flight finishes.

        Raises ``TaskNotFoundError`` when there is no such task and ``TaskValidationError``
        when other tasks name it in ``parent_tasks``.
        """
        if not await self.delete_task(task):
            raise TaskNotFoundError(f"no task named {_name_of(task)!r}")

    async def delete_task(self, task: TaskRef) -> bool:
        """Like ``remove_task`` but returns False instead of raising when the task is absent."""
        await self.open()
        name = _name_of(task)
        if self.engine.shared:  # other processes change tasks too: ask the store, not our plans
            children = sorted(t.name for t in await self.backend.store.list_tasks() if name in t.parent_tasks)
        else:
            children = self.engine.plans.children_of(name)
        if children:
            raise TaskValidationError(
                [Problem(name, f"is a parent of {', '.join(children)}; remove or change those tasks first")]
            )
        plan = self.engine.plans.current(name)
        existed = await self.backend.store.delete_task(name)
        self.engine.plans.uninstall(name)
        if plan is not None:
            self.engine.forget_task(name, plan.task.version)
        self.engine.wake()
        if existed and self.engine.events.active:
            self.engine.events.emit(ev.TaskRemoved(self.clock.now(), name))
        return existed

    async def pause_task(self, task: TaskRef) -> Task:
        """Stop firing a task but keep it: stored as a new version with ``enabled=False`` (its
        definition otherwise unchanged), so it has no next fire and parents do not start it.
        A run in flight finishes. Already paused: nothing changes. Returns the stored task;
        raises ``TaskNotFoundError``."""
        return await self._set_enabled(_name_of(task), False)

    async def resume_task(self, task: TaskRef) -> Task:
        """Fire a paused task again: stored as a new version with ``enabled=True``; its trigger
        counts from now (fires missed while paused are not made up). Not paused: nothing
        changes. Returns the stored task; raises ``TaskNotFoundError``."""
        return await self._set_enabled(_name_of(task), True)

    async def _set_enabled(self, name: str, enabled: bool) -> Task:
        await self.open()
        current = await self.backend.store.get_task(name)
        if current is None:
            raise TaskNotFoundError(f"no task named {name!r}")
        if current.enabled is enabled:
            return current
        return await self.add_task(attrs.evolve(current, enabled=enabled), replace=True, keep_paused=False)

    async def cancel_task(self, name: TaskRef) -> bool:
        """Remove the task with its scheduled times and queued retries, and cancel its runs in
        flight (recorded as cancelled). Returns False when there was no such task."""
        existed = await self.delete_task(name)
        self.engine.cancel_runs(_name_of(name))
        return existed

    # -- runs --------------------------------------------------------------------------------------

    async def run(self, task: TaskRef) -> Run:
        """Execute a task now, in the caller's time, retries included; return its last attempt.

        A ``Task`` that is not stored runs without being stored; its runs are recorded.
        """
        await self.open()
        plan = await self._plan_for_run(task)
        return await self.engine.execute_now(plan)

    async def fire_now(self, name: str, reason: str = "manual", *, queue_when_busy: bool = True) -> Run:
        """Fire the stored task ``name`` now, as the scheduler loop would: the run is queued for
        the workers (any worker process, with a shared backend) and counts toward
        ``max_instances``. Returns the queued run. Raises ``TaskNotFoundError``.

        When ``max_instances`` runs of the task are active, the run waits in the queue
        (``run.waits_for_instance``) and starts, under the id returned, once one of them ends;
        with ``queue_when_busy=False`` it is recorded ``skipped`` instead,
        as a scheduled fire is, and that record is returned (its ``reason`` says why).

        Unlike ``run()``, it returns at once and does not execute in the caller.
        """
        await self.open()
        engine = self.engine
        # The current version, also if another process stored (or removed) it an instant ago, when
        # its notice may still be on the way here: the plan known here is tried first, the version
        # is checked as the run is queued, and the task is read again only if the check fails.
        plan = engine.plans.current(name)
        for _ in range(_FIRE_NOW_ATTEMPTS):
            if plan is None:
                plan = await engine.reload_task(name)
                if plan is None:
                    raise TaskNotFoundError(f"no task named {name!r}")
            now = self.clock.now()
            run_id = new_run_id()
            # An id of its own: two manual fires in one instant, or one at a scheduled fire's instant,
            # are separate fires, each counted toward max_instances.
            fire = f"{fire_id(name, now)}~{run_id}"
            run = await engine.dispatch(plan, now, reason, now, run_id=run_id, fire=fire, expect_version=True,
                                        queue_when_busy=queue_when_busy)
            if run is not None:
                return run
            plan = None  # stored in another version, or removed, since this process last read it
        raise SchedulerStateError(f"task {name!r} changed {_FIRE_NOW_ATTEMPTS} times while it was being fired")

    async def _plan_for_run(self, task: TaskRef) -> TaskPlan:
        if isinstance(task, str):
            return self.engine.plans.require(task)
        current = self.engine.plans.current(task.name)
        if current is not None and _definition(current.task) == _definition(task):
            return current
        # An ad-hoc run does not wait for parents, so only problems with parent_tasks are ignored.
        problems = [p for _, p in self._check([task], {}) if p.key_path != "parent_tasks"]
        if problems:
            raise TaskValidationError(problems, source=f"task {task.name!r}")
        return self.engine.compile(task)

    def _check(self, tasks: Sequence[Task], existing: Mapping[str, Task]) -> list[tuple[int, Problem]]:
        """What the plugins and the other tasks find wrong with ``tasks`` (see ``check_tasks``)."""
        return check_tasks(
            tasks,
            plugins=self.plugins,
            resolve_function=self.functions.resolve,
            existing=existing,
            default_timezone=self.engine.defaults.timezone,
        )

    async def runs(
        self,
        name: str | None = None,
        state: str | RunState | Iterable[str | RunState] | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Recorded runs, newest first, filtered by task name and state."""
        await self.open()
        return await self.backend.store.list_runs(name, _states(state), limit)

    async def get_run(self, run_id: str) -> Run | None:
        """One run record by id."""
        await self.open()
        return await self.backend.store.get_run(run_id)

    async def wait_idle(self) -> None:
        """Wait until no run is queued or executing."""
        await self.engine.wait_idle()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, *, scheduler: bool = True, worker: bool = True) -> None:
        """Start firing and executing tasks; returns at once.

        ``worker=False`` only fires tasks (the runs go to workers elsewhere), ``scheduler=False``
        only executes runs: both need a backend that several processes share, such as redis.
        """
        if self._running:
            raise SchedulerStateError("the scheduler is already running")
        if not (scheduler and worker) and not self.engine.shared:
            role = "a worker" if worker else "a scheduler"
            raise SchedulerStateError(
                f"running only {role} needs a backend shared between processes, such as redis; scheduler_backend "
                f"is {self.config.get('scheduler_backend')!r} (use `sts run` to run both in one process)"
            )
        await self.open()
        self.engine.start(scheduler=scheduler, worker=worker)
        self._running = True
        await self.plugins.scheduler_started(self)
        if self.engine.events.active:
            self.engine.events.emit(ev.SchedulerStarted(self.clock.now(), self.id))
        roles = " + ".join(self.engine.roles) or "no loops"
        log.info(
            "STS started (backend %s%s, %d task(s), %s, id %s)",
            self.config.get("scheduler_backend"),
            f", broker {self.config.get('broker')}" if self.config.get("broker") else "",
            len(self.engine.plans), roles, self.id,  # as loaded by open(): no second read
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop gracefully: no new fires; runs in flight get ``grace`` seconds (default
        ``scheduler.shutdown_grace``) to finish, then are recorded as interrupted."""
        if not self._running:
            return
        self._running = False
        grace = self.config.seconds("scheduler.shutdown_grace") if grace is None else grace
        log.info("STS stopping")
        if self.engine.events.active:
            self.engine.events.emit(ev.SchedulerStopping(self.clock.now(), self.id))
        await self.plugins.scheduler_stopping(self)
        await self.engine.stop(grace or 0.0)
        await self.close()
        await self.plugins.scheduler_stopped(self)
        log.info("STS stopped")

    async def close(self) -> None:
        """Release the backend and threads (event listeners get the last events first)."""
        # Synchronous on purpose: at interpreter exit (a signal, atexit) no executor thread can
        # be started. It blocks only while a listener is still busy, and at most 5 seconds.
        self.engine.close()
        if self._opened:
            await self.backend.broker.close()
            await self.backend.store.close()
            self._opened = False

    async def __aenter__(self) -> AsyncTaskScheduler:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._running:
            await self.stop()
        else:
            await self.close()


def _same_definition(stored: Task, task: Task, keep_paused: bool) -> bool:
    """True when adding ``task`` again changes nothing. With ``keep_paused``, a paused task stays
    paused when its definition is added again as it was (``enabled`` true, the default): an
    operator's pause is undone by ``resume_task``, not by an application re-adding its tasks."""
    if _definition(stored) == _definition(task):
        return True
    return (keep_paused and not stored.enabled and task.enabled
            and _definition(stored) == _definition(attrs.evolve(task, enabled=False)))


def _definition(task: Task) -> Task:
    """The task without its version, for comparing definitions."""
    return attrs.evolve(task, version=0)
