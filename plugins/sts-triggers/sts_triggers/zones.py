"""Local wall-clock times and UTC instants, under the plugin's daylight-saving policy.

The policy, shared by every trigger that reads a local time:

* a local time that a spring-forward skips means the first instant after the gap
  (02:30 on the America/New_York spring-forward day is 03:00 EDT);
* a local time that a fall-back repeats means its first occurrence (the earlier instant).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo


def to_wall(instant: datetime, zone: tzinfo) -> datetime:
    """The naive local wall-clock time of the aware ``instant`` in ``zone``."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def wall_to_utc(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant of the naive local time ``wall`` in ``zone`` (see the module policy)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    return _gap_end(wall, zone)


def as_utc(value: datetime, zone: tzinfo) -> datetime:
    """``value`` as an aware UTC datetime; a naive value is a local time in ``zone``."""
    if value.tzinfo is None:
        return wall_to_utc(value, zone)
    return value.astimezone(UTC)


def _gap_end(wall: datetime, zone: tzinfo) -> datetime:
    """The first instant after the gap that the (non-existent) local time ``wall`` lies in.

    For a time in a gap, fold=1 reads it with the offset after the transition and fold=0
    with the offset before, which gives two instants either side of the transition; the
    transition itself is found by bisection on whole seconds (tz data is in whole seconds).
    """
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if before > after:
        before, after = after, before
    target = after.astimezone(zone).utcoffset()
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
