"""At most one alert per key (task, kind) per window, then one summary of what was held back.

All times are the scheduler's clock (``event.time``, ``scheduler.clock.now()``), never the
real time of this thread, so a test with a ``FakeClock`` decides exactly what is sent:

- The first alert for a key is sent and opens a window ``[t, t + window)``.
- Alerts for that key inside the window are suppressed and counted.
- When the window has ended and something was suppressed, ONE summary is due. It is handed
  out by ``due(now)`` - called with the time of every event the plugin receives and by the
  plugin's sender thread about every ``tick`` seconds - or, if an alert for the same key
  comes first, by ``admit`` together with that alert (the summary goes first). Either way
  the window is then closed, and the next alert opens a new one.
- ``flush(now)`` hands out every pending summary early (at shutdown), marked as such.

A window that ends with nothing suppressed closes silently. Thread-safe: the event thread
admits, the sender thread asks for due summaries.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from datetime import datetime, timedelta
from typing import Any

import attrs


@attrs.frozen
class Summary:
    """How many alerts for ``key`` were held back in ``[start, end)``."""

    key: Hashable
    suppressed: int
    start: datetime
    end: datetime
    last_time: datetime
    #: Whatever the caller gave with the last suppressed alert (for the summary's text).
    last_detail: Any = None
    #: True when handed out before the window ended (shutdown).
    early: bool = False
    #: Where the key's last alert went (the caller's ``route``): the summary goes there too.
    route: Any = None


@attrs.define
class _Window:
    start: datetime
    end: datetime
    suppressed: int = 0
    last_time: datetime | None = None
    last_detail: Any = None
    route: Any = None

    def summary(self, key: Hashable, *, early: bool = False, now: datetime | None = None) -> Summary:
        assert self.last_time is not None
        end = now if early and now is not None else self.end
        return Summary(key, self.suppressed, self.start, end, self.last_time, self.last_detail, early, self.route)


class Throttle:
    """Windows per key; ``window`` seconds long (0: nothing is throttled)."""

    def __init__(self, window: float) -> None:
        self.window = timedelta(seconds=window)
        self._windows: dict[Hashable, _Window] = {}
        self._lock = threading.Lock()

    def admit(
        self, key: Hashable, now: datetime, detail: Any = None, route: Any = None
    ) -> tuple[bool, Summary | None]:
        """Whether an alert for ``key`` at ``now`` is sent, and the summary of the key's
        previous window when it is due now (send it before the alert). ``route`` (where the
        alert goes) is kept with the window, so the state of a key lives only as long as its
        window."""
        if not self.window:
            return True, None
        with self._lock:
            window = self._windows.get(key)
            summary = None
            if window is not None and now >= window.end:
                summary = window.summary(key) if window.suppressed else None
                window = None
            if window is None:
                self._windows[key] = _Window(start=now, end=now + self.window, route=route)
                return True, summary
            window.suppressed += 1
            window.last_time, window.last_detail, window.route = now, detail, route
            return False, None

    def due(self, now: datetime) -> list[Summary]:
        """Summaries of windows that ended by ``now`` with something suppressed; those windows
        (and ended empty ones) are closed."""
        if not self._windows:
            return []
        with self._lock:
            ended = [(key, window) for key, window in self._windows.items() if now >= window.end]
            for key, _ in ended:
                del self._windows[key]
        return [window.summary(key) for key, window in ended if window.suppressed]

    def flush(self, now: datetime) -> list[Summary]:
        """Every pending summary, now (early for windows still open); all windows close."""
        with self._lock:
            windows, self._windows = self._windows, {}
        return [
            window.summary(key, early=now < window.end, now=now) for key, window in windows.items() if window.suppressed
        ]
