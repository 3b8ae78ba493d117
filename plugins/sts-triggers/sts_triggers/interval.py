"""The ``interval`` trigger: every fixed span of elapsed time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sts_triggers.spec import check_keys, read_duration, read_window, required
from sts_triggers.text import format_span

_ONE_MICROSECOND = timedelta(microseconds=1)


class IntervalTrigger:
    """Fires every ``every``, counted in elapsed time (daylight-saving changes do not matter).

    Without ``start`` the first fire is one interval after the task is added; with ``start``
    fires are aligned on ``start + k * every`` (the first one at or after the time the task is
    added). Each fire is the previous one plus ``every``, so there is no drift. Nothing fires
    after ``end``.
    """

    __slots__ = ("end", "every", "start")

    def __init__(self, every: timedelta, start: datetime | None = None, end: datetime | None = None) -> None:
        if every < _ONE_MICROSECOND:
            raise ValueError(f"'every': expected an interval greater than zero, got {format_span(every)}")
        self.every = every
        self.start = start
        self.end = end

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], timezone: ZoneInfo) -> IntervalTrigger:
        """Build from ``{"kind": "interval", "every": 30.0, "start": ..., "end": ...}``."""
        check_keys(spec, "interval", ("every",))
        every = read_duration(required(spec, "every", "interval"), "every")
        start, end = read_window(spec, timezone)
        return cls(every, start, end)

    def first_fire(self, now: datetime) -> datetime | None:
        """``now + every``, or with ``start`` the first aligned time at or after ``now``."""
        if self.start is None:
            return self._within(now + self.every)
        if self.start >= now:
            return self._within(self.start)
        steps = -(-(now - self.start) // self.every)  # ceiling division on timedeltas
        return self._within(self.start + steps * self.every)

    def next_fire(self, previous: datetime) -> datetime | None:
        """``previous + every``; None past ``end``."""
        return self._within(previous + self.every)

    def describe(self) -> str:
        """``every 30s``."""
        return f"every {format_span(self.every)}"

    def _within(self, fire: datetime) -> datetime | None:
        return None if self.end is not None and fire > self.end else fire

    def __repr__(self) -> str:
        return f"IntervalTrigger(every={self.every!r}, start={self.start!r}, end={self.end!r})"
