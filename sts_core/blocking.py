"""``TaskScheduler``: the blocking scheduler from the user docs, for plain scripts.

It runs an ``AsyncTaskScheduler`` on an event loop in a background thread, keeps the process
alive until ``stop()`` or SIGINT / SIGTERM, and turns each of its coroutines into a blocking call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sts_core.clock import Clock
from sts_core.config import Config
from sts_core.errors import SchedulerStateError
from sts_core.health import Health
from sts_core.plugins import PluginManager
from sts_core.run import Run, RunState
from sts_core.scheduler import AsyncTaskScheduler, TaskRef
from sts_core.task import Task

log = logging.getLogger("sts.scheduler")
T = TypeVar("T")
#: A signal handler waits for the graceful stop at most ``scheduler.shutdown_grace`` plus this
#: long before handing the signal on (a stop stuck on a lock the interrupted thread holds is freed then).
STOP_WAIT_MARGIN = 5.0


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


class TaskScheduler:
    """The blocking scheduler from the user docs.

    ``start()`` returns at once; the engine runs on a background event loop, and the process
    stays alive until ``stop()`` or SIGINT / SIGTERM (a second signal stops without waiting for
    runs in flight). Every other method blocks until its work is done.

    A signal first stops the scheduler gracefully, then goes on to the handler it replaced, so
    the program's own ``except KeyboardInterrupt`` runs on the first Ctrl-C (with the scheduler
    already stopped). Once the script's last line has run, a signal only stops the scheduler and
    the process exits normally.
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
        self._exiting = False
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

    def health(self) -> Health:
        """How this process is doing (see ``AsyncTaskScheduler.health``)."""
        return self._scheduler.health()

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

    def add_task(self, task: Task, *, replace: bool = False, keep_paused: bool = True) -> Task:
        """Store and schedule ``task``; see ``AsyncTaskScheduler.add_task``."""
        return self._call(self._scheduler.add_task(task, replace=replace, keep_paused=keep_paused))

    def add_tasks(self, tasks: Sequence[Task], *, replace: bool = False, keep_paused: bool = True) -> list[Task]:
        """Add several tasks all or nothing; see ``AsyncTaskScheduler.add_task``."""
        return self._call(self._scheduler.add_tasks(tasks, replace=replace, keep_paused=keep_paused))

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

    def pause_task(self, task: TaskRef) -> Task:
        """Stop firing a task but keep its definition (a new version with ``enabled=False``)."""
        return self._call(self._scheduler.pause_task(task))

    def resume_task(self, task: TaskRef) -> Task:
        """Fire a paused task again (a new version with ``enabled=True``, counting from now)."""
        return self._call(self._scheduler.resume_task(task))

    def next_fire_time(self, name: str) -> datetime | None:
        """When the task fires next (UTC), or None (paused, started by parents, or done)."""
        return self._call(self._scheduler.next_fire_time(name))

    def fire_now(self, name: str, reason: str = "manual", *, queue_when_busy: bool = True) -> Run:
        """Queue a run of the stored task now, as the scheduler loop would; see
        ``AsyncTaskScheduler.fire_now``. Returns at once with the queued run."""
        return self._call(self._scheduler.fire_now(name, reason, queue_when_busy=queue_when_busy))

    def get_run(self, run_id: str) -> Run | None:
        """One recorded run by id (error, traceback, output and timings included), or None."""
        return self._call(self._scheduler.get_run(run_id))

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

    def start(self, *, scheduler: bool = True, worker: bool = True) -> None:
        """Start the scheduler and return at once; the process stays up until ``stop()``.

        ``scheduler=False`` runs only a worker, ``worker=False`` only the scheduler loop (both
        need a backend shared between processes, such as redis). Applies the config's
        ``logging`` section to the ``sts`` logger (``AsyncTaskScheduler`` leaves logging to the
        application).
        """
        from sts_core.logsetup import configure_logging

        configure_logging(self.config)
        self._signals_seen = 0
        self._done.clear()
        self._install_signal_handlers()
        try:
            self._keep_process_alive()
            self._call(self._scheduler.start(scheduler=scheduler, worker=worker))
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
        self._exiting = True  # the script's last line has run: a signal now only stops the scheduler
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
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        if self._done.is_set():  # stopped from another thread, where the handlers could not be restored
            self._restore_signal_handlers()
            _chain(previous, signum, frame, default=True)
            return
        self._signals_seen += 1
        name = signal.Signals(signum).name
        if self._signals_seen > 1:
            log.info("received %s again: interrupting runs in flight", name)
            loop = self._loop
            if loop is not None:
                loop.call_soon_threadsafe(self._scheduler.engine.interrupt_all)
            return
        log.info("received %s: stopping gracefully (send it again to stop at once)", name)
        # Never stop on this thread: it was interrupted wherever it was, perhaps holding a lock (a
        # logging handler's, say) that the stop needs. Stop beside it.
        stopping = threading.Thread(target=self.stop, name="sts-stop", daemon=True)
        stopping.start()
        if self._exiting:  # the script has ended: nobody is left to hand the signal to
            return
        # Wait for the graceful stop, so that the caller sees a stopped scheduler: in slices, so that a
        # second signal lands in here and interrupts the runs in flight; and bounded, so that a stop
        # waiting for a lock this thread holds is freed once the signal below unwinds this thread.
        give_up = time.monotonic() + (self.config.seconds("scheduler.shutdown_grace") or 0.0) + STOP_WAIT_MARGIN
        if _holds_a_log_handler_lock():  # the stop logs: it would wait for this thread until give_up
            give_up = 0.0
        while stopping.is_alive() and time.monotonic() < give_up:
            stopping.join(0.1)
        if not stopping.is_alive():
            self._restore_signal_handlers()
        # A library must not eat the host program's signals: hand it on to the handler it replaced
        # (for SIGINT that is Python's, which raises KeyboardInterrupt in the caller's code).
        _chain(previous, signum, frame, default=False)

    def __enter__(self) -> TaskScheduler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _holds_a_log_handler_lock() -> bool:
    """True when this thread holds the lock of a handler the scheduler's log lines go through (the
    signal interrupted it inside a log call)."""
    for logger in (logging.getLogger("sts"), logging.getLogger()):
        for handler in logger.handlers:
            is_owned = getattr(handler.lock, "_is_owned", None)  # RLock's own check, in C and Python
            if is_owned is not None and is_owned():
                return True
    return False


def _chain(handler: Any, signum: int, frame: Any, *, default: bool) -> None:
    """Call the signal handler the scheduler replaced: a Python function is called; ``SIG_DFL``
    is re-raised only when ``default`` (after a graceful stop, SIGTERM's default would kill the
    process the scheduler just stopped cleanly); ``SIG_IGN`` does nothing."""
    if callable(handler):
        handler(signum, frame)
    elif default and handler == signal.SIG_DFL:
        signal.raise_signal(signum)
