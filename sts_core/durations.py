"""Parse human durations such as ``30s``, ``5m``, ``1h30m``, ``250ms`` or plain seconds."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from sts_core.wording import short_repr

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
#: The longest duration accepted: 100 years. Longer ones (or infinity) would overflow date-time
#: arithmetic when a trigger or retry adds them to the current time.
MAX_DURATION = 100 * 365.25 * 86400.0
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\s*\d+(?:\.\d+)?\s*(?:ms|sec|min|s|m|h|d|w))+\s*$")


def parse_duration(value: object) -> float:
    """Return ``value`` as seconds (float).

    Accepts a number of seconds, a ``timedelta``, or a string made of ``<number><unit>``
    parts (units: ms, s, m, h, d, w), e.g. ``"1h30m"``. Raises ``ValueError`` with the
    accepted forms when the value is none of these, negative, or longer than 100 years.
    """
    seconds = duration_seconds(value)
    if seconds is None:
        if isinstance(value, str):
            raise ValueError(
                f"expected a duration such as 30s, 5m, 1h30m or a number of seconds, got {short_repr(value)}"
            )
        raise ValueError(f"expected a duration such as 30s, 5m or 1h30m, got {short_repr(value)}")
    if seconds != seconds:
        raise ValueError(f"expected a duration such as 30s, 5m or 1h30m, got {short_repr(value)}")
    if seconds < 0:
        raise ValueError(f"expected a duration of zero or more, got {short_repr(value)}")
    if seconds > MAX_DURATION:
        raise ValueError(f"expected a duration of at most 100 years, got {short_repr(value)}")
    return seconds


def duration_seconds(value: object) -> float | None:
    """The seconds a duration value says, unchecked (negative, NaN, or longer than any limit:
    infinity for an int too large for a float); None when ``value`` is no duration at all.
    ``parse_duration`` is this plus the checks; a caller with limits of its own uses this."""
    if isinstance(value, bool):
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int):
        # 10**309 is too large for a float: no need to convert what is out of range anyway
        return float(value) if abs(value) <= MAX_DURATION else math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            return float(text)
        except ValueError:
            return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)) if _WHOLE.match(text) else None
    return None


def format_duration(seconds: float) -> str:
    """Render seconds compactly for tables and logs: ``850ms``, ``12.3s``, ``4m05s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
