"""The scheduler users talk to: ``AsyncTaskScheduler`` for asyncio applications and
``TaskScheduler``, its blocking twin, which runs the engine on a background event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sts_core import events as ev
from sts_core.clock import Clock, SystemClock
from sts_core.config import Config
from sts_core.engine import Engine
from sts_core.errors import (
    ConfigError,
    PluginError,
    Problem,
    SchedulerStateError,
    TaskExistsError,
    TaskNotFoundError,
    TaskValidationError,
)
from sts_core.functions import FunctionRegistry
from sts_core.model import Run, RunState, Task
from sts_core.plans import TaskPlan
from sts_core.plugins import PluginManager
from sts_core.taskfile import validate_task_file
from sts_core.validation import check_tasks

log = logging.getLogger("sts.scheduler")
T = TypeVar("T")
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
        backend_name = self.config.get("scheduler_backend")
        try:
            factory = self.plugins.lookup("backend", backend_name).value
        except PluginError as exc:
            raise ConfigError([Problem("scheduler_backend", str(exc))], source=self.config.source) from None
        self.backend = factory(self.config, self.clock)
        self.engine = Engine(
            config=self.config,
            plugins=self.plugins,
            backend=self.backend,
            clock=self.clock,
            resolve_function=self.functions.resolve,
            scheduler_id=self.id,
        )
        self._opened = False
        self._running = False
        self._stopped: asyncio.Event | None = None

    # -- setup -------------------------------------------------------------------------------------

    def register_function(self, name: str, function: Callable[..., Any]) -> None:
        """Let tasks refer to ``function`` by ``name`` (``function: name`` in a task file)."""
        self.functions.register(name, function)

    async def open(self) -> None:
        """Connect the backend and load the tasks it already holds (called by ``start``)."""
        if self._opened:
            return
        await self.backend.store.open()
        await self.backend.broker.open()
        self._opened = True
        for task in await self.backend.store.list_tasks():
            try:
                self.engine.plans.install(self.engine.compile(task))
            except Exception as exc:  # noqa: BLE001 - one bad stored task must not stop the others
                log.error("stored task %r cannot be loaded: %s", task.name, exc)

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._running

    # -- tasks -------------------------------------------------------------------------------------

    async def add_task(self, task: Task, *, replace: bool = False) -> Task:
        """Store ``task`` and schedule it; returns the stored task with its version.

        A name that exists is an error unless ``replace`` is true, which stores the task as the
        next version of that name. Raises ``TaskValidationError`` when the task is invalid
        (nothing is stored then).
        """
        return (await self.add_tasks([task], replace=replace))[0]

    async def add_tasks(self, tasks: Sequence[Task], *, replace: bool = False) -> list[Task]:
        """Add several tasks all or nothing (one invalid task means none is stored)."""
        await self.open()
        tasks = list(tasks)
        for task in tasks:
            if not isinstance(task, Task):
                raise TypeError(f"add_task() takes a Task, e.g. Task('name', function=...), not {task!r}")
        existing = {task.name: task for task in await self.backend.store.list_tasks()}
        if not replace:
            taken = [task.name for task in tasks if task.name in existing]
            if taken:
                raise TaskExistsError(
                    f"task {taken[0]!r} already exists; pass replace=True to store a new version"
                )
        problems = check_tasks(
            tasks,
            plugins=self.plugins,
            resolve_function=self.functions.resolve,
            existing=existing,
            default_timezone=self.config.get("timezone", "UTC"),
        )
        if problems:
            raise TaskValidationError(
                [Problem(f"{tasks[i].name}.{p.key_path}" if p.key_path else tasks[i].name, p.message)
                 for i, p in problems]
            )
        plans = [self.engine.compile(task) for task in tasks]
        stored = await self.backend.store.put_tasks(tasks, replace=replace)
        for plan, task in zip(plans, stored, strict=True):
            plan.task = task
            self.engine.plans.install(plan)
            await self.engine.schedule_first(plan)
            if self.engine.events.active:
                self.engine.events.emit(ev.TaskAdded(self.clock.now(), task))
        return stored

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
            default_timezone=self.config.get("timezone", "UTC"),
        )
        changed = [t for t in tasks if t.name not in existing or _definition(existing[t.name]) != _definition(t)]
        stored = {task.name: task for task in await self.add_tasks(changed, replace=True)} if changed else {}
        return [stored.get(task.name) or existing[task.name] for task in tasks]

    async def get_task(self, name: str) -> Task | None:
        """The current version of the task named ``name``, or None."""
        await self.open()
        return await self.backend.store.get_task(name)

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

    async def _plan_for_run(self, task: TaskRef) -> TaskPlan:
        if isinstance(task, str):
            return self.engine.plans.require(task)
        current = self.engine.plans.current(task.name)
        if current is not None and _definition(current.task) == _definition(task):
            return current
        problems = check_tasks(
            [task],
            plugins=self.plugins,
            resolve_function=self.functions.resolve,
            existing={},
            default_timezone=self.config.get("timezone", "UTC"),
        )
        problems = [(i, p) for i, p in problems if p.key_path != "parent_tasks"]
        if problems:
            raise TaskValidationError([p for _, p in problems], source=f"task {task.name!r}")
        return self.engine.compile(task)

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
        """Start firing and executing tasks; returns at once."""
        if self._running:
            raise SchedulerStateError("the scheduler is already running")
        await self.open()
        self._stopped = asyncio.Event()
        self.engine.start(scheduler=scheduler, worker=worker)
        self._running = True
        await self.plugins.scheduler_started(self)
        if self.engine.events.active:
            self.engine.events.emit(ev.SchedulerStarted(self.clock.now(), self.id))
        log.info(
            "STS started (backend %s, %d task(s), scheduler id %s)",
            self.config.get("scheduler_backend"), len(await self.backend.store.list_tasks()), self.id,
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
        log.info("STS stopped")
        if self._stopped is not None:
            self._stopped.set()

    async def close(self) -> None:
        """Release the backend and threads."""
        self.engine.close()
        if self._opened:
            await self.backend.broker.close()
            await self.backend.store.close()
            self._opened = False

    async def wait_stopped(self) -> None:
        """Wait until ``stop()`` has finished."""
        if self._stopped is not None:
            await self._stopped.wait()

    async def __aenter__(self) -> AsyncTaskScheduler:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._running:
            await self.stop()
        else:
            await self.close()


def _wait_for(future: concurrent.futures.Future[T], timeout: float | None) -> T:
    """``future.result(timeout)``, waiting in short slices so signal handlers can run meanwhile."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
        try:
            return future.result(max(left, 0.0))
        except concurrent.futures.TimeoutError:
            if future.done() or (deadline is not None and time.monotonic() >= deadline):
                raise  # the coroutine's own TimeoutError, or our deadline


def _definition(task: Task) -> Task:
    """The task without its version, for comparing definitions."""
    import attrs

    return attrs.evolve(task, version=0)


class TaskScheduler:
    """The blocking scheduler from the user docs.

    ``start()`` returns at once; the engine runs on a background event loop, and the process
    stays alive until ``stop()`` or SIGINT / SIGTERM (a second signal stops without waiting for
    runs in flight). Every other method blocks until its work is done.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        clock: Clock | None = None,
        plugins: PluginManager | None = None,
    ) -> None:
        self._scheduler = AsyncTaskScheduler(config, clock=clock, plugins=plugins)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._keeping_alive = False
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._signals_seen = 0
        self._previous_handlers: dict[int, Any] = {}

    @property
    def config(self) -> Config:
        """The configuration in use."""
        return self._scheduler.config

    @property
    def plugins(self) -> PluginManager:
        """The plugin manager of this scheduler."""
        return self._scheduler.plugins

    @property
    def asyncio_scheduler(self) -> AsyncTaskScheduler:
        """The asyncio scheduler underneath (its coroutines run on this scheduler's loop)."""
        return self._scheduler

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._scheduler.running

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._ensure_loop()
        if threading.current_thread() is self._loop_thread:
            coro.close()
            raise SchedulerStateError("blocking TaskScheduler methods cannot be called from a running task's loop")
        return _wait_for(asyncio.run_coroutine_threadsafe(coro, loop), timeout)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="sts-loop", daemon=True)
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    def register_function(self, name: str, function: Callable[..., Any]) -> None:
        """Let tasks refer to ``function`` by ``name``."""
        self._scheduler.register_function(name, function)

    def add_task(self, task: Task, *, replace: bool = False) -> Task:
        """Store and schedule ``task``; see ``AsyncTaskScheduler.add_task``."""
        return self._call(self._scheduler.add_task(task, replace=replace))

    def add_tasks(self, tasks: Sequence[Task], *, replace: bool = False) -> list[Task]:
        """Add several tasks all or nothing."""
        return self._call(self._scheduler.add_tasks(tasks, replace=replace))

    def load_task_file(self, path: str | os.PathLike[str]) -> list[Task]:
        """Validate a task file and add its tasks all or nothing."""
        return self._call(self._scheduler.load_task_file(path))

    def remove_task(self, task: TaskRef) -> None:
        """Remove a task and its scheduled times; a run in flight finishes."""
        self._call(self._scheduler.remove_task(task))

    def delete_task(self, task: TaskRef) -> bool:
        """Remove a task if it exists; False when it did not."""
        return self._call(self._scheduler.delete_task(task))

    def cancel_task(self, name: TaskRef) -> bool:
        """Remove a task with its scheduled times and cancel its runs in flight."""
        return self._call(self._scheduler.cancel_task(name))

    def get_task(self, name: str) -> Task | None:
        """The current version of a task, or None."""
        return self._call(self._scheduler.get_task(name))

    def list_tasks(self) -> list[Task]:
        """Every stored task, sorted by name."""
        return self._call(self._scheduler.list_tasks())

    def run(self, task: TaskRef) -> Run:
        """Execute a task now and return its recorded (last) attempt."""
        return self._call(self._scheduler.run(task))

    def runs(
        self,
        name: str | None = None,
        state: str | RunState | Iterable[str | RunState] | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Recorded runs, newest first."""
        return self._call(self._scheduler.runs(name, state, limit))

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until no run is queued or executing."""
        self._call(self._scheduler.wait_idle(), timeout)

    def start(self) -> None:
        """Start the scheduler and return at once; the process stays up until ``stop()``.

        Applies the config's ``logging`` section to the ``sts`` logger (``AsyncTaskScheduler``
        leaves logging to the application).
        """
        from sts_core.logsetup import configure_logging

        configure_logging(self.config)
        self._signals_seen = 0
        self._done.clear()
        self._install_signal_handlers()
        try:
            self._keep_process_alive()
            self._call(self._scheduler.start())
        except BaseException:
            self.stop()
            raise

    def _keep_process_alive(self) -> None:
        # When the main thread reaches the end of the script, the interpreter runs the threading
        # exit hooks (concurrent.futures shuts its pools there, asyncio's default executor among
        # them) before it joins threads. Waiting in such a hook, registered after theirs, keeps
        # the process and those pools alive until stop(); it waits in short slices so signal
        # handlers run on the main thread even when the kernel delivers a signal elsewhere.
        if self._keeping_alive:
            return
        self._keeping_alive = True
        try:
            threading._register_atexit(self._wait_until_stopped)
        except (AttributeError, RuntimeError):  # no such hook, or the interpreter is exiting already
            threading.Thread(target=self._wait_until_stopped, name="sts-keepalive", daemon=False).start()

    def _wait_until_stopped(self) -> None:
        while not self._done.wait(0.2):
            pass
        self._restore_signal_handlers()

    def stop(self, grace: float | None = None) -> None:
        """Stop gracefully (see ``AsyncTaskScheduler.stop``) and release the event loop."""
        if threading.current_thread() is self._loop_thread:
            raise SchedulerStateError(
                "TaskScheduler.stop() blocks, so it cannot be called from a coroutine on the scheduler's "
                "loop; use `await scheduler.asyncio_scheduler.stop()` there"
            )
        try:
            if self._loop is not None and self._scheduler.running:
                self._call(self._scheduler.stop(grace))
        finally:
            self._restore_signal_handlers()
            self._shutdown_loop()
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the scheduler has stopped (by ``stop()`` or a signal); True if it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # short slices, so signal handlers run on this thread meanwhile
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if self._done.wait(max(left, 0.0)):
                self._restore_signal_handlers()
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _shutdown_loop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._loop_thread
            self._loop = self._loop_thread = None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close_on_loop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        loop.close()

    async def _close_on_loop(self) -> None:
        """Close the backend and end what still runs on the loop, so no caller waits for ever."""
        if self._scheduler._opened:
            await self._scheduler.close()
        leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(signum, self._on_signal)
            if previous != self._on_signal:  # started again before the old handlers came back
                self._previous_handlers[signum] = previous

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._done.is_set():  # stopped from another thread, where the handlers could not be restored
            previous = self._previous_handlers.get(signum, signal.SIG_DFL)
            self._restore_signal_handlers()
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signum)
            return
        self._signals_seen += 1
        name = signal.Signals(signum).name
        if self._signals_seen == 1:
            log.info("received %s: stopping gracefully (send it again to stop at once)", name)
            threading.Thread(target=self.stop, name="sts-stop", daemon=True).start()
            return
        log.info("received %s again: interrupting runs in flight", name)
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._scheduler.engine.interrupt_all)

    def __enter__(self) -> TaskScheduler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
