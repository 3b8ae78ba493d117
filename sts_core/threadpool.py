"""A bounded pool of daemon threads for the synchronous functions tasks run.

``concurrent.futures.ThreadPoolExecutor`` is the obvious choice, but its threads keep the
interpreter from exiting until they finish, and it refuses work once the main thread has
reached the end of the script. A scheduler's pool must do neither: a function that outlives
its timeout is abandoned (it cannot be killed), and a script that ends with ``start()`` keeps
running its tasks. So this pool's threads are daemon threads, started lazily up to a bound.

The engine awaits results through :meth:`DaemonThreadPool.run_for_loop`, which hands them back
in batches: a thread that finishes a call wakes the event loop only when no wake-up is already
pending, so a burst of short calls costs one loop wake-up, not one each (``run_in_executor``
pays a ``concurrent.futures.Future``, a wrapping asyncio future and a self-pipe write per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

_STOP = None


class _LoopResults:
    """Outcomes of calls made for one event loop, handed to it in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []

    def add(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        with self._lock:
            self._outcomes.append((future, result, error))
            wake = len(self._outcomes) == 1  # the first of a batch schedules the hand-over
        if wake:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits these results any more
                self.loop.call_soon_threadsafe(self._hand_over)

    def _hand_over(self) -> None:
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
        for future, result, error in outcomes:
            if future.cancelled():
                continue  # abandoned (a timeout): the late result is dropped
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


class DaemonThreadPool(Executor):
    """At most ``max_workers`` daemon threads running submitted callables in order."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "sts-run") -> None:
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        # Each item is a call to make and how to cancel it if the pool shuts down first.
        self._work: queue.SimpleQueue[tuple[Callable[[], None], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._shut = False
        self._results: _LoopResults | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a pool thread; returns its ``concurrent.futures`` future."""
        future: Future[Any] = Future()

        def job() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)

        self._put(job, future.cancel)
        return future

    def run_for_loop(self, fn: Callable[..., Any], /, *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` in a pool thread; returns an asyncio future of the running loop.

        Cancelling the future abandons the call: it is skipped if no thread has taken it yet,
        otherwise its late result is dropped.
        """
        loop = asyncio.get_running_loop()
        results = self._results
        if results is None or results.loop is not loop:
            results = self._results = _LoopResults(loop)
        future: asyncio.Future[Any] = loop.create_future()

        def job() -> None:
            if future.cancelled():  # a racy read, but a late answer only means one wasted call
                return
            try:
                result = fn(*args)
            except StopIteration as exc:  # cannot be set on an asyncio future
                results.add(future, None, RuntimeError(f"the function raised StopIteration: {exc}"))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
                results.add(future, None, exc)
            else:
                results.add(future, result, None)

        self._put(job, future.cancel)
        return future

    def _put(self, job: Callable[[], None], cancel: Callable[[], Any]) -> None:
        with self._lock:
            if self._shut:
                raise RuntimeError("the thread pool is shut down")
            self._work.put((job, cancel))
            if self._idle:
                self._idle -= 1  # an idle thread will take it
            elif len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._prefix}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            item[0]()
            del item
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; threads exit when done with what they run (``wait`` joins them)."""
        with self._lock:
            self._shut = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._work.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    item[1]()
        for _ in threads:
            self._work.put(_STOP)
        if wait:
            for thread in threads:
                thread.join()
