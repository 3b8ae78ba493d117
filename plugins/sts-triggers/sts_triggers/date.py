"""The ``date`` trigger: once, at a given date and time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sts_triggers.spec import check_keys, read_instant, read_window, required
from sts_triggers.text import format_local


class DateTrigger:
    """Fires once, at ``at``, even when that lies in the past when the task is added (the
    engine's misfire policy then decides whether it still runs).

    A naive ``at`` is a local time in the task's time zone (a skipped local time means the
    first instant after the gap, a repeated one its first occurrence). An ``at`` outside the
    ``start``/``end`` window is an error, since the task could never run.
    """

    __slots__ = ("at", "zone")

    def __init__(self, at: datetime, zone: tzinfo) -> None:
        self.at = at
        self.zone = zone

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], timezone: ZoneInfo) -> DateTrigger:
        """Build from ``{"kind": "date", "at": datetime}`` (``start``/``end`` only checked)."""
        check_keys(spec, "date", ("at",))
        at = read_instant(required(spec, "at", "date"), "at", timezone)
        start, end = read_window(spec, timezone)
        if start is not None and at < start:
            raise ValueError(f"'at' ({at.isoformat()}) is before 'start' ({start.isoformat()}): it would never run")
        if end is not None and at > end:
            raise ValueError(f"'at' ({at.isoformat()}) is after 'end' ({end.isoformat()}): it would never run")
        return cls(at, timezone)

    def first_fire(self, now: datetime) -> datetime | None:
        """``at``, whatever ``now`` is."""
        return self.at

    def next_fire(self, previous: datetime) -> datetime | None:
        """None: a date trigger fires once."""
        return None

    def describe(self) -> str:
        """``at 2026-12-01 09:30 UTC`` (shown in the task's time zone)."""
        return f"at {format_local(self.at, self.zone)}"

    def __repr__(self) -> str:
        return f"DateTrigger(at={self.at!r}, zone={self.zone!r})"
