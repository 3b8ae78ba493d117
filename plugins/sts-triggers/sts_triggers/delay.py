"""The ``delay`` trigger: once, a fixed time after the task is added."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sts_triggers.spec import check_keys, read_duration, read_window, required
from sts_triggers.text import format_span


class DelayTrigger:
    """Fires once, ``delay`` after the task is added (``first_fire(now) = now + delay``).

    With ``start`` the fire is not before ``start``; past ``end`` it never fires.
    """

    __slots__ = ("delay", "end", "start")

    def __init__(self, delay: timedelta, start: datetime | None = None, end: datetime | None = None) -> None:
        self.delay = delay
        self.start = start
        self.end = end

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], timezone: ZoneInfo) -> DelayTrigger:
        """Build from ``{"kind": "delay", "delay": 10.0}``."""
        check_keys(spec, "delay", ("delay",))
        delay = read_duration(required(spec, "delay", "delay"), "delay")
        start, end = read_window(spec, timezone)
        return cls(delay, start, end)

    def first_fire(self, now: datetime) -> datetime | None:
        """``now + delay`` (not before ``start``); None past ``end``."""
        fire = now + self.delay
        if self.start is not None and fire < self.start:
            fire = self.start
        return None if self.end is not None and fire > self.end else fire

    def next_fire(self, previous: datetime) -> datetime | None:
        """None: a delay trigger fires once."""
        return None

    def describe(self) -> str:
        """``after 10s``."""
        return f"after {format_span(self.delay)}"

    def __repr__(self) -> str:
        return f"DelayTrigger(delay={self.delay!r}, start={self.start!r}, end={self.end!r})"
