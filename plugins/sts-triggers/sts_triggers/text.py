"""Short texts for ``Trigger.describe()``: durations and local times."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

_UNITS: tuple[tuple[str, int], ...] = (
    ("d", 86_400_000_000),
    ("h", 3_600_000_000),
    ("m", 60_000_000),
    ("s", 1_000_000),
    ("ms", 1_000),
)


def format_span(span: timedelta) -> str:
    """An exact compact duration: ``30s``, ``1h30m``, ``2d``, ``1.5s``, ``250ms``, ``0s``."""
    micros = span // timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    if micros % 1000 or (micros < 60_000_000 and micros % 1_000_000 and micros > 1_000_000):
        # not a whole number of the small units: show seconds with the needed decimals
        return f"{micros / 1_000_000:g}s"
    parts = []
    for name, size in _UNITS:
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count}{name}")
    return "".join(parts)


def zone_name(zone: tzinfo) -> str:
    """The IANA name of ``zone`` when it has one (``Europe/Berlin``), else its abbreviation."""
    return getattr(zone, "key", None) or str(zone)


def format_local(instant: datetime, zone: tzinfo) -> str:
    """``2026-12-01 09:30 UTC``: the instant in ``zone``, seconds shown only when not zero."""
    local = instant.astimezone(zone)
    pattern = "%Y-%m-%d %H:%M:%S" if local.second or local.microsecond else "%Y-%m-%d %H:%M"
    return f"{local.strftime(pattern)} {zone_name(zone)}"
