"""Converters of option values: each returns the value a task keeps, or raises ``ValueError``
saying what was expected (the caller names the option). ``None`` means "not given" for the
``optional_*`` ones. ``Task`` uses them for its own fields (``sts_core.task.CONVERTERS``), and
plugins for the options they declare (``sts.plugin.converters``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sts_core.durations import parse_duration
from sts_core.wording import did_you_mean, short_repr

#: The largest whole number a count option (``retries``, ``max_instances``) takes: larger ones
#: serve no schedule, and past 4300 digits an integer no longer reads back from JSON.
MAX_COUNT = 1_000_000_000



class _EmptyMapping(Mapping[str, Any]):
    """An empty read-only mapping that equals ``{}``, reads as ``{}`` and copies and pickles as itself."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"

    def __reduce__(self) -> str:
        return "EMPTY_MAPPING"


class CompactMapping(Mapping[str, Any]):
    """A small read-only mapping kept as a tuple of keys and a tuple of values, the keys shared with
    every other such mapping of the same keys: a task's few options (``function``, ``every``) in
    about 100 bytes where a dict of them takes about 180. Equal to a dict of the same items."""

    __slots__ = ("_keys", "_values")

    def __init__(self, items: Mapping[str, Any]) -> None:
        keys = tuple(items)
        if len(_SHARED_KEYS) >= 1024 and keys not in _SHARED_KEYS:  # key sets are few; never let them pile up
            _SHARED_KEYS.clear()
        self._keys: tuple[str, ...] = _SHARED_KEYS.setdefault(keys, keys)
        self._values = tuple(items.values())

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[self._keys.index(key)]
        except ValueError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return repr(dict(zip(self._keys, self._values, strict=True)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (CompactMapping, (dict(zip(self._keys, self._values, strict=True)),))


_SHARED_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {}


def compact(items: Mapping[str, Any]) -> Mapping[str, Any]:
    """``items`` as a ``CompactMapping``, or ``EMPTY_MAPPING`` when empty."""
    return CompactMapping(items) if items else EMPTY_MAPPING


#: The one empty mapping every task without ``params``, ``alerts`` or plugin options shares: read-only,
#: so sharing it is safe, and a task no longer carries an empty dict of its own per mapping (64 B each).
EMPTY_MAPPING: Mapping[str, Any] = _EmptyMapping()


def optional_duration(value: Any) -> float | None:
    """A duration (``30s``, ``1h30m``, seconds) as seconds."""
    return None if value is None else parse_duration(value)


def optional_positive_duration(value: Any) -> float | None:
    """A duration greater than zero, as seconds."""
    seconds = optional_duration(value)
    if seconds == 0:  # a timeout of zero would time out every run before it starts
        raise ValueError(f"expected a duration greater than zero such as 30s, 5m or 1h30m, got {short_repr(value)}")
    return seconds


def optional_int(minimum: int) -> Callable[[Any], int | None]:
    """A converter of a whole number from ``minimum`` to ``MAX_COUNT``."""
    def convert(value: Any) -> int | None:
        return None if value is None else whole(value, minimum)

    return convert


def whole(value: Any, minimum: int) -> int:
    """``value`` when it is a whole number from ``minimum`` to ``MAX_COUNT`` (never None)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"expected a whole number >= {minimum}, got {short_repr(value)}")
    if value > MAX_COUNT:
        raise ValueError(f"expected a whole number from {minimum} to {MAX_COUNT}, got {short_repr(value)}")
    return value


def optional_number(minimum: float) -> Callable[[Any], float | None]:
    """A converter of a finite number of ``minimum`` or more, as a float."""
    def convert(value: Any) -> float | None:
        if value is None:
            return None
        try:
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        except OverflowError:  # an int too large for a float
            number = math.inf
        if not minimum <= number < math.inf:
            raise ValueError(f"expected a finite number >= {minimum}, got {short_repr(value)}")
        return number

    return convert


def optional_datetime(value: Any) -> datetime | None:
    """A date-time, or its ISO 8601 text."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected an ISO 8601 date-time such as 2026-12-01T09:30:00+01:00, got {short_repr(value)}")


def optional_timezone(value: Any) -> str | None:
    """The name of an IANA time zone this system knows."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an IANA time zone name such as Europe/Berlin, got {short_repr(value)}")
    check_timezone(value)
    return value


def check_timezone(name: str) -> ZoneInfo:
    """Return the zone for ``name`` or raise ``ValueError`` naming what was expected."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" names a directory
        from zoneinfo import available_timezones

        hint = did_you_mean(name, available_timezones())
        raise ValueError(
            f"unknown time zone {short_repr(name)}{hint}; expected an IANA name such as Europe/Berlin"
        ) from None


def optional_str(value: Any) -> str | None:
    """Text."""
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"expected text, got {short_repr(value)}")


def str_tuple(value: Any) -> tuple[str, ...]:
    """A list of names (or one name) as a tuple; None as ``()``."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"expected a list of names, got {short_repr(value)}")


def mapping(value: Any) -> Mapping[str, Any]:
    """A mapping with text keys, as a dict; None or an empty mapping as ``EMPTY_MAPPING`` (read-only)."""
    if value is None:
        return EMPTY_MAPPING
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value) if value else EMPTY_MAPPING
    raise ValueError(f"expected a mapping of names to values, got {short_repr(value)}")


def optional_mapping(value: Any) -> Mapping[str, Any] | None:
    """A mapping with text keys, as a dict."""
    return None if value is None else mapping(value)


def choice(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    """A converter of one of ``choices``, with a "did you mean" for a near miss."""
    def convert(value: Any) -> str | None:
        if value is None:
            return None
        if value not in choices:
            hint = did_you_mean(value, choices) if isinstance(value, str) else ""
            raise ValueError(f"expected one of {', '.join(choices)}, got {short_repr(value)}{hint}")
        return value

    return convert


def boolean(value: Any) -> bool:
    """True or false (not a truthy value)."""
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {short_repr(value)}")


def positive_int(value: Any) -> int:
    """A whole number from 1 to ``MAX_COUNT``."""
    return whole(value, 1)
