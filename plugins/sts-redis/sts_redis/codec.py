"""How values are written to Redis: JSON text for tasks and runs (never pickle), and times as
whole microseconds since the Unix epoch, the scores sorted sets hold.

Whole microseconds below 2**53 are exact in a double (Redis scores, Lua numbers), so a
stored fire time compares equal to the ``datetime`` it came from.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sts.plugin import Run

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_us(when: datetime) -> int:
    """``when`` (timezone-aware) as microseconds since the epoch."""
    if when.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got {when!r}")
    return (when - EPOCH) // _MICROSECOND


def from_us(us: int | float | bytes | str) -> datetime:
    """The UTC datetime of a microsecond score."""
    return EPOCH + timedelta(microseconds=int(float(us)))


def to_json(data: Any) -> str:
    """Compact JSON text (UTF-8 kept as is)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def run_json(run: Run) -> str:
    """A run as the JSON text stored in run records and queued messages."""
    return to_json(run.to_dict())
