"""Reading a trigger spec (plain data from ``Task.trigger_spec()``) into checked Python values.

Every reader raises ``ValueError`` naming the option and what was expected, so the core can
report it against the task.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sts.plugin import did_you_mean, parse_duration, short_repr
from sts_triggers.zones import as_utc

#: Options every trigger kind accepts besides its own.
WINDOW_KEYS: tuple[str, ...] = ("start", "end")


def check_keys(spec: Mapping[str, Any], kind: str, own: tuple[str, ...]) -> None:
    """Raise ``ValueError`` for an option the ``kind`` trigger does not know."""
    allowed = ("kind", *own, *WINDOW_KEYS)
    for key in spec:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed)
            raise ValueError(
                f"unknown option {short_repr(key)} for {_a(kind)} trigger{hint}; expected: {', '.join(allowed[1:])}"
            )


def required(spec: Mapping[str, Any], key: str, kind: str) -> Any:
    """The value of ``key``; ``ValueError`` when it is missing or null."""
    value = spec.get(key)
    if value is None:
        raise ValueError(f"{_a(kind)} trigger needs the option {key!r}")
    return value


def read_duration(value: Any, key: str) -> timedelta:
    """A duration option (seconds, a ``timedelta`` or text such as ``1h30m``) as a ``timedelta``."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{key!r}: {exc}") from None
    return _timedelta(seconds)


@functools.lru_cache(maxsize=1024)
def _timedelta(seconds: float) -> timedelta:
    # One shared (immutable) timedelta per distinct duration: many tasks share a few intervals,
    # and each trigger keeping its own costs 40 bytes per task.
    return timedelta(seconds=seconds)


def read_instant(value: Any, key: str, zone: tzinfo) -> datetime:
    """A date-time option as an aware UTC datetime; naive values are local times in ``zone``."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # not ISO text: reported below with the expected form
            value = datetime.fromisoformat(value.strip())
    if not isinstance(value, datetime):
        raise ValueError(f"{key!r}: expected an ISO 8601 date-time such as 2026-12-01T09:30:00+01:00, "
                         f"got {short_repr(value)}")
    return as_utc(value, zone)


def read_window(spec: Mapping[str, Any], zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    """The optional ``start`` and ``end`` options, checked to be in order."""
    start = None if spec.get("start") is None else read_instant(spec["start"], "start", zone)
    end = None if spec.get("end") is None else read_instant(spec["end"], "end", zone)
    if start is not None and end is not None and end < start:
        raise ValueError(f"'end' ({end.isoformat()}) must not be before 'start' ({start.isoformat()})")
    return start, end


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"
