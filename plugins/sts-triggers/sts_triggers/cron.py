"""The ``cron`` trigger: a cron expression evaluated in the task's time zone."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim

from sts_triggers.cronexpr import fields_of, normalize
from sts_triggers.spec import check_keys, read_window, required
from sts_triggers.text import zone_name
from sts_triggers.zones import to_wall, wall_to_utc

_ONE_MICROSECOND = timedelta(microseconds=1)


class CronTrigger:
    """Fires at the local times that match a cron expression in the task's time zone.

    Accepts standard 5-field expressions (``minute hour day-of-month month day-of-week``),
    6 fields with seconds first, and the aliases ``@yearly`` ``@monthly`` ``@weekly``
    ``@daily`` ``@hourly``. Fires are never before ``start`` nor after ``end``.

    Daylight-saving policy: the expression names local wall-clock times, and each matching
    local time fires exactly once.

    * A local time skipped by a spring-forward fires once, at the first instant after the
      gap (``30 2 * * *`` on the America/New_York spring-forward day fires at 03:00 EDT);
      several skipped times, and a match right at the end of the gap, become that one fire.
    * A local time repeated by a fall-back fires once, at its first occurrence (so
      ``*/15 * * * *`` is silent during the second pass through the repeated hour).

    A fire never happens twice and never goes missing. The expression is evaluated in naive
    local time by cronsim and each match is mapped to UTC here, so the policy holds for
    every expression, whatever cronsim's own (Debian cron compatible) DST handling is.
    """

    __slots__ = ("_fields", "_last", "_lock", "end", "expression", "start", "zone")

    def __init__(
        self, expression: str, zone: tzinfo, start: datetime | None = None, end: datetime | None = None
    ) -> None:
        self.expression = normalize(expression)
        self._fields = fields_of(self.expression)
        self.zone = zone
        self.start = start
        self.end = end
        # The iterator that produced the last fire, so the usual next_fire(last fire) call
        # continues it instead of parsing the expression again.
        self._last: tuple[datetime, Iterator[datetime]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], timezone: ZoneInfo) -> CronTrigger:
        """Build from ``{"kind": "cron", "cron": "*/5 * * * *", "start": ..., "end": ...}``."""
        check_keys(spec, "cron", ("cron",))
        expression = required(spec, "cron", "cron")
        start, end = read_window(spec, timezone)
        return cls(expression, timezone, start, end)

    def first_fire(self, now: datetime) -> datetime | None:
        """The first matching time strictly after ``now`` and not before ``start``."""
        return self._fire_after(self._not_before_start(now))

    def next_fire(self, previous: datetime) -> datetime | None:
        """The first matching time strictly after ``previous``; None past ``end``."""
        return self._fire_after(self._not_before_start(previous))

    def describe(self) -> str:
        """``cron */5 * * * * (Europe/Berlin)``."""
        return f"cron {self.expression} ({zone_name(self.zone)})"

    def _not_before_start(self, after: datetime) -> datetime:
        if self.start is not None and after < self.start:
            return self.start - _ONE_MICROSECOND
        return after

    def _fire_after(self, after: datetime) -> datetime | None:
        with self._lock:
            last = self._last
            if last is not None and last[0] == after:
                matches = last[1]
            else:
                matches = CronSim(self._fields, to_wall(after, self.zone))
            fire = None
            # Matches come in local-time order; skipped times collapse onto the end of their
            # gap and the second pass through a repeated hour maps to instants already past,
            # so both are passed over here.
            for wall in matches:
                candidate = wall_to_utc(wall, self.zone)
                if candidate > after:
                    fire = candidate
                    break
            if fire is None or (self.end is not None and fire > self.end):
                self._last = None
                return None
            self._last = (fire, matches)
            return fire

    def __repr__(self) -> str:
        return f"CronTrigger({self.expression!r}, zone={self.zone!r}, start={self.start!r}, end={self.end!r})"
