"""A bounded pool of daemon threads for the synchronous functions tasks run.

``concurrent.futures.ThreadPoolExecutor`` is the obvious choice, but its threads keep the
interpreter from exiting until they finish, and it refuses work once the main thread has
reached the end of the script. A scheduler's pool must do neither: a function that outlives
its timeout is abandoned (it cannot be killed), and a script that ends with ``start()`` keeps
running its tasks. So this pool's threads are daemon threads, started lazily up to a bound.

An abandoned call still occupies its thread, so the pool replaces it: it keeps ``max_workers``
threads free of abandoned calls, as long as no more than ``max_abandoned`` abandoned calls are
still running. Past that cap nothing is replaced (a hung function leaks a thread for good) and
calls wait for the threads left, which the pool logs. A thread whose abandoned call ends
serves again if the pool is short of threads, and exits otherwise. A call's timeout counts
from the moment a thread starts it: while it waits for a thread, its deadline is paused.

The engine awaits results through :meth:`DaemonThreadPool.call`, which hands them back in
batches: a thread that finishes a call wakes the event loop only when no wake-up is already
pending, so a burst of short calls costs one loop wake-up, not one each (``run_in_executor``
pays a ``concurrent.futures.Future``, a wrapping asyncio future and a self-pipe write per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sts.engine")

_STOP = None


class _LoopResults:
    """Outcomes of calls made for one event loop, and deadlines to resume on it, handed to it in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._started: list[_Job] = []

    def add(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        with self._lock:
            self._outcomes.append((future, result, error))
            wake = len(self._outcomes) + len(self._started) == 1  # the first of a batch schedules the hand-over
        if wake:
            self._wake()

    def started(self, job: _Job) -> None:
        """``job`` waited for a thread and starts now: its paused deadline runs again, from now."""
        with self._lock:
            self._started.append(job)
            wake = len(self._outcomes) + len(self._started) == 1
        if wake:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits these results any more
            self.loop.call_soon_threadsafe(self._hand_over)

    def _hand_over(self) -> None:
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
            started, self._started = self._started, []
        now = self.loop.time()
        for job in started:  # the deadline was paused by call(), before this ran on the loop
            deadline = job.deadline
            if deadline is not None and deadline.when() is None:
                with contextlib.suppress(RuntimeError):  # the caller's timeout block is over already
                    deadline.reschedule(now + job.remaining)
        for future, result, error in outcomes:
            if future.cancelled():
                continue  # abandoned (a timeout): the late result is dropped
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


class _Job:
    """One queued call ``fn(*args)``, its outcome for ``future`` (handed over through ``results``);
    ``waits`` is set before it is queued, ``abandoned`` under the pool's lock.

    The call is this object's method rather than a closure: one object per call for the garbage
    collector instead of a function, its cells and a bound method.
    """

    __slots__ = (
        "abandoned", "args", "count_hung", "deadline", "fn", "future", "remaining", "results", "running", "waits",
    )

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any], results: _LoopResults
    ) -> None:
        self.fn = fn
        self.args = args
        self.future = future
        self.results = results  # the hand-over to the caller's loop
        self.running = False
        self.abandoned = False
        #: Queued with a deadline while no thread was free: the thread taking it resumes ``deadline``.
        self.waits = False
        self.deadline: asyncio.Timeout | None = None
        self.remaining = 0.0
        #: Called with +1 when the call is abandoned while it runs and -1 when it returns after that,
        #: under the pool's lock (so in that order), on whichever thread it happens.
        self.count_hung: Callable[[int], None] | None = None

    def run(self) -> None:
        """Make the call (in a pool thread) and hand its outcome to the caller's loop."""
        future, results = self.future, self.results
        if future.cancelled():  # a racy read, but a late answer only means one wasted call
            return
        try:
            result = self.fn(*self.args)
        except StopIteration as exc:  # cannot be set on an asyncio future
            results.add(future, None, RuntimeError(f"the function raised StopIteration: {exc}"))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
            results.add(future, None, exc)
        else:
            results.add(future, result, None)

    def cancel(self) -> None:
        """The pool shuts down before a thread took the call."""
        self.future.cancel()


class DaemonThreadPool:
    """``max_workers`` daemon threads running the callables given to ``call`` in order, replacing threads
    whose call was abandoned while at most ``max_abandoned`` such calls still run."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "sts-run", *, max_abandoned: int = 32) -> None:
        self._max_workers = max_workers
        self._max_abandoned = max_abandoned
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Under _lock: the live threads; the idle ones not yet promised a queued job; the queued
        # jobs that wait for a busy thread to finish (each thread ending a job takes one of those
        # before it counts as idle); the threads still running an abandoned call.
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._waiting = 0
        self._abandoned = 0
        self._started = 0  # threads ever started: names stay unique
        self._at_cap = False  # the cap stopped a replacement; logged once until an abandoned call ends
        self._lock = threading.Lock()
        self._shut = False
        self._results: _LoopResults | None = None

    @property
    def max_abandoned(self) -> int:
        """The most abandoned calls still running whose threads are replaced."""
        return self._max_abandoned

    @property
    def abandoned_threads(self) -> int:
        """Threads still running a call whose caller gave up on it (a timeout, a cancellation)."""
        return self._abandoned

    @property
    def waiting(self) -> int:
        """Calls queued with no thread free to take them."""
        return self._waiting

    async def call(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        deadline: asyncio.Timeout | None = None,
        on_abandon: Callable[[int, bool], None] | None = None,
        count_hung: Callable[[int], None] | None = None,
    ) -> Any:
        """Run ``fn(*args)`` in a pool thread and return its result (or raise its exception).

        A call that has to wait for a thread does not spend ``deadline`` (the caller's
        ``asyncio.timeout``) meanwhile: it is paused until a thread starts the call, so a
        timeout counts from the function's start. Cancelled before a thread took it, the call
        is skipped; cancelled while it runs, it is abandoned: its late result is dropped, a
        replacement thread may start, and ``on_abandon(abandoned_threads, replaced)`` is called.
        ``count_hung(+1)`` and, when the abandoned call returns at last, ``count_hung(-1)`` keep a
        count of abandoned calls still running that outlives the loop (see ``_Job.count_hung``).
        """
        loop = asyncio.get_running_loop()
        results = self._results
        if results is None or results.loop is not loop:
            results = self._results = _LoopResults(loop)
        future: asyncio.Future[Any] = loop.create_future()
        job = _Job(fn, args, future, results)
        job.count_hung = count_hung
        deadline_at = None if deadline is None else deadline.when()
        if deadline_at is not None:
            job.deadline = deadline
        self._put(job)
        if job.waits and deadline is not None and deadline_at is not None:
            # The thread taking the job resumes the deadline through the loop: after this pause.
            job.remaining = deadline_at - loop.time()
            deadline.reschedule(None)
        try:
            return await future
        except asyncio.CancelledError:
            self._abandon(job, on_abandon)
            raise

    def _put(self, job: _Job) -> None:
        with self._lock:
            if self._shut:
                raise RuntimeError("the thread pool is shut down")
            if self._idle:
                self._idle -= 1  # an idle thread will take it
            elif not self._grow():
                self._waiting += 1
                job.waits = job.deadline is not None
            self._work.put(job)

    def _grow(self) -> bool:
        """Under the lock: start a thread if one is missing and the cap allows it; True if started."""
        threads = len(self._threads)
        if threads - self._abandoned >= self._max_workers:
            return False
        if threads >= self._max_workers + self._max_abandoned:
            if not self._at_cap:
                self._at_cap = True
                log.error(
                    "thread pool full: abandoned threads (functions still running past their timeout) reach "
                    "executor.max_abandoned_threads=%d and are no longer replaced (%d still running); synchronous "
                    "runs wait for the %d threads left. Run code that can hang with executor: process or as an "
                    "async function",
                    self._max_abandoned, self._abandoned, threads - self._abandoned,
                )
            return False
        self._started += 1
        thread = threading.Thread(target=self._serve, name=f"{self._prefix}_{self._started - 1}", daemon=True)
        self._threads.append(thread)
        thread.start()  # it takes a queued job first thing
        return True

    def _abandon(self, job: _Job, on_abandon: Callable[[int, bool], None] | None) -> None:
        with self._lock:
            if not job.running or job.abandoned:
                return  # not started (the thread skips it) or already over
            job.abandoned = True
            if job.count_hung is not None:
                job.count_hung(1)
            self._abandoned += 1
            abandoned = self._abandoned
            replaced = len(self._threads) < self._max_workers + self._max_abandoned
            if self._waiting and not self._shut and self._grow():
                self._waiting -= 1
        if on_abandon is not None:
            on_abandon(abandoned, replaced)

    def _serve(self) -> None:
        current = threading.current_thread()
        while True:
            job = self._work.get()
            if job is _STOP:
                return
            job.running = True  # before the call checks whether it was cancelled: see _abandon
            if job.waits:
                job.results.started(job)
            job.run()
            with self._lock:
                job.running = False
                if job.abandoned:
                    self._abandoned -= 1
                    self._at_cap = False
                    if job.count_hung is not None:
                        job.count_hung(-1)
                    if len(self._threads) - self._abandoned > self._max_workers:
                        self._threads.remove(current)  # its replacement serves instead
                        return
                if self._waiting:
                    self._waiting -= 1  # it takes a waiting job next
                else:
                    self._idle += 1
            del job

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; threads exit when done with what they run (``wait`` joins them)."""
        with self._lock:
            self._shut = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    job = self._work.get_nowait()
                except queue.Empty:
                    break
                if job is not _STOP:
                    job.cancel()
        for _ in threads:
            self._work.put(_STOP)
        if wait:
            for thread in threads:
                thread.join()

