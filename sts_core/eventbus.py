"""Delivers events to the plugins' ``handle_event`` implementations off the engine's path.

When no plugin listens, ``active`` is False and the engine builds no event objects at all.
Otherwise events go through a queue to one daemon thread, in order; a listener that raises is
logged in one line with its plugin's name and the file and line in the plugin that failed (the
traceback too at DEBUG), and the others still get the event.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from sts_core.events import Event
from sts_core.plugins import HookCall

log = logging.getLogger("sts.events")
_STOP = object()


class EventBus:
    """Fan-out of events to listeners, in one background thread; each listener is told which
    ``scheduler`` emitted the event (one process may run several)."""

    def __init__(self, listeners: list[HookCall], *, scheduler: Any = None) -> None:
        self._listeners = listeners
        self._scheduler = scheduler
        self.active = bool(listeners)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        """Queue ``event`` for every listener (never blocks, never raises)."""
        if not self.active:
            return
        if self._thread is None:
            self._start()
        self._queue.put(event)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._dispatch, name="sts-events", daemon=True)
                self._thread.start()

    def _dispatch(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                return
            for listener in self._listeners:
                try:
                    listener(event=event, scheduler=self._scheduler)
                except Exception as exc:  # noqa: BLE001 - the other listeners still get the event
                    listener.log_failure(log, logging.ERROR, exc, getattr(event, "kind", ""))

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, then stop the thread (waiting at most ``timeout`` seconds)."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("event listeners were still busy %gs after the stop; the events they have not "
                        "handled yet may not reach them before the scheduler is reported stopped", timeout)
        self._thread = None
