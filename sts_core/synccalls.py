"""Synchronous task functions run in a thread pool: the pool, created on first use, and the calls
of each task's function abandoned after their run ended (a timeout, a cancellation) and still
running, which keep a hanging task from taking the whole pool."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from sts_core import events as ev
from sts_core.clock import Clock
from sts_core.errors import TaskStillRunningError
from sts_core.eventbus import EventBus
from sts_core.run import Run
from sts_core.threadpool import DaemonThreadPool

log = logging.getLogger("sts.engine")

#: ``executor.max_abandoned_threads`` when the config has no such key.
DEFAULT_MAX_ABANDONED = 32


class SyncCalls:
    """Runs synchronous functions for runs (``call``), in a thread pool of ``max_threads``.

    Owns the pool (``threads``, None until first used, again after ``close``) and the count of
    abandoned calls still running, by task name. Given the clock and the event bus (for
    ``ThreadAbandoned``) and the ``executor.max_workers`` / ``max_abandoned_threads`` settings.
    """

    def __init__(self, *, clock: Clock, events: EventBus, max_threads: int, max_abandoned: int) -> None:
        self.clock = clock
        self.events = events
        self._max_threads = max_threads
        self._max_abandoned = max_abandoned
        self._threads: DaemonThreadPool | None = None
        # task name -> calls of its sync function abandoned after their run ended and still running
        self._hung_calls: Counter[str] = Counter()
        self._hung_lock = threading.Lock()  # pool threads count down too

    @property
    def threads(self) -> DaemonThreadPool | None:
        """The thread pool running synchronous functions (None until first used)."""
        return self._threads

    def close(self) -> None:
        """Release the threads (does not wait for threads still running a timed-out function)."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    def call(
        self,
        run: Run,
        deadline: asyncio.Timeout | None,
        max_instances: int,
        function: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Awaitable[Any]:
        """``ExecutionContext.run_sync`` for ``run`` (bound with ``functools.partial``): call
        ``function`` in the thread pool, its timeout (``deadline``) counting from the call's
        start. Raises ``TaskStillRunningError`` while ``max_instances`` calls of the task's
        earlier runs still hang in abandoned threads: a task that hangs holds that many threads
        at most, never the whole pool."""
        hung = self._hung_calls.get(run.task_name, 0)
        if hung >= max_instances:
            raise TaskStillRunningError(
                f"not started: {hung} call(s) of this task's function from earlier runs are still running in "
                f"abandoned threads (they did not return after the run timed out or was cancelled), and "
                f"max_instances={max_instances}; it starts again once they return. Run code that can hang with "
                "executor: process, whose child is killed at the timeout"
            )
        if kwargs:
            function = functools.partial(function, **kwargs)
        threads = self._threads
        if threads is None:
            threads = self._threads = DaemonThreadPool(
                self._max_threads,
                thread_name_prefix="sts-run",
                max_abandoned=self._max_abandoned,
            )
        on_abandon = functools.partial(self._thread_abandoned, run, deadline)
        count_hung = functools.partial(self._count_hung, run.task_name)
        return threads.call(function, *args, deadline=deadline, on_abandon=on_abandon, count_hung=count_hung)

    def _count_hung(self, task_name: str, change: int) -> None:
        """A call of the task's function was abandoned while running (+1), or returned after that (-1).
        Called by the pool's threads as well as the loop, and kept apart from both: a call that
        returns while the scheduler is stopped, or after its pool was replaced, still counts down."""
        with self._hung_lock:
            left = self._hung_calls[task_name] + change
            if left:
                self._hung_calls[task_name] = left
            else:
                del self._hung_calls[task_name]
        if change < 0:
            log.info("task %r: a call of its function abandoned after its run ended has returned", task_name)

    def _thread_abandoned(self, run: Run, deadline: asyncio.Timeout | None, abandoned: int, replaced: bool) -> None:
        """A run's synchronous function outlived its run (a timeout, a cancellation): say so, once."""
        why = "timed out" if deadline is not None and deadline.expired() else "was cancelled"
        cap = self._threads.max_abandoned if self._threads is not None else DEFAULT_MAX_ABANDONED
        if replaced:
            log.warning(
                "task %r (run %s): its function is still running after the run %s; Python cannot stop a thread, "
                "so it is abandoned and replaced (abandoned threads still running: %d; at most %d are replaced, "
                "executor.max_abandoned_threads). Run code that can hang with executor: process or as an async "
                "function", run.task_name, run.id, why, abandoned, cap,
            )
        else:
            log.error(
                "task %r (run %s): its function is still running after the run %s; its thread is abandoned and "
                "NOT replaced: abandoned threads still running (%d) exceed executor.max_abandoned_threads=%d, so "
                "synchronous runs wait for the threads left. Run code that can hang with executor: process or as "
                "an async function", run.task_name, run.id, why, abandoned, cap,
            )
        if self.events.active:
            self.events.emit(ev.ThreadAbandoned(self.clock.now(), run.task_name, run.id, abandoned, cap, replaced))

