"""A bounded pool of daemon threads for the synchronous functions tasks run.

``concurrent.futures.ThreadPoolExecutor`` is the obvious choice, but its threads keep the
interpreter from exiting until they finish, and it refuses work once the main thread has
reached the end of the script. A scheduler's pool must do neither: a function that outlives
its timeout is abandoned (it cannot be killed), and a script that ends with ``start()`` keeps
running its tasks. So this pool's threads are daemon threads, started lazily up to a bound.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

_STOP = None


class DaemonThreadPool(Executor):
    """At most ``max_workers`` daemon threads running submitted callables in order."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "sts-run") -> None:
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._shut = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a pool thread; returns its future."""
        future: Future[Any] = Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("the thread pool is shut down")
            self._work.put((future, lambda: fn(*args, **kwargs)))
            if self._idle:
                self._idle -= 1  # an idle thread will take it
            elif len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._prefix}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    result = call()
                except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del item, future, call
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
                    item[0].cancel()
        for _ in threads:
            self._work.put(_STOP)
        if wait:
            for thread in threads:
                thread.join()
