"""The ``prometheus`` config section: defaults, validation, and the settings an exporter uses."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from sts.plugin import check_section, did_you_mean, format_address, parse_duration
from sts.plugin import parse_address as parse_host_port

#: The ``prometheus`` config section with its defaults.
DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "address": "127.0.0.1:9464",
    "sample_interval": "5s",
    "process_metrics": True,
    "buckets": {"duration": None, "lateness": None},
}

#: Upper bounds (seconds) of the run duration histogram: 5 ms to 4 hours.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400,
)
#: Upper bounds (seconds) of the lateness histogram: 1 ms to 1 hour.
LATENESS_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)
_BUCKET_KEYS = ("duration", "lateness")
ADDRESS_EXPECTED = (
    "expected host:port such as 127.0.0.1:9464 (this host only), 0.0.0.0:9464 (every interface) "
    "or [::1]:9464; port 0 picks a free port"
)


@attrs.frozen
class Settings:
    """The ``prometheus`` section, checked and converted."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9464
    sample_interval: float = 5.0
    process_metrics: bool = True
    duration_buckets: tuple[float, ...] = DURATION_BUCKETS
    lateness_buckets: tuple[float, ...] = LATENESS_BUCKETS

    @property
    def address(self) -> str:
        """The configured address as written in config (``host:port``, IPv6 in brackets)."""
        return format_address(self.host, self.port)

    @classmethod
    def from_config(cls, config: Any) -> Settings:
        """Read the section from a config validated by ``validate_section`` (through the kernel)."""
        section = {key: config.get(f"prometheus.{key}", default) for key, default in DEFAULTS.items()}
        buckets = section["buckets"] or {}
        host, port = parse_address(section["address"])
        return cls(
            enabled=bool(section["enabled"]),
            host=host,
            port=port,
            sample_interval=parse_duration(section["sample_interval"]),
            process_metrics=bool(section["process_metrics"]),
            duration_buckets=_buckets(buckets.get("duration")) or DURATION_BUCKETS,
            lateness_buckets=_buckets(buckets.get("lateness")) or LATENESS_BUCKETS,
        )


def parse_address(value: Any) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"``) as ``(host, port)``; raises ``ValueError`` saying what is expected."""
    return parse_host_port(value, ADDRESS_EXPECTED)


def validate_section(section: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems in the ``prometheus`` section as ``(key_path, message)``, key paths relative to it."""
    return check_section("prometheus", section, _CHECKS)


def _check_enabled(value: Any) -> list[tuple[str, str]]:
    return [] if isinstance(value, bool) else [("", f"expected true or false, got {value!r}")]


def _check_address(value: Any) -> list[tuple[str, str]]:
    try:
        parse_address(value)
    except ValueError as exc:
        return [("", str(exc))]
    return []


def _check_interval(value: Any) -> list[tuple[str, str]]:
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = -1.0
    if seconds > 0:
        return []
    return [("", f"expected a duration greater than zero such as 5s or 30s, got {value!r}")]


def _check_buckets(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [("", f"expected a mapping with the keys duration and lateness, got {value!r}")]
    problems = []
    for key, bounds in value.items():
        if key not in _BUCKET_KEYS:
            problems.append((str(key), f"unknown histogram{did_you_mean(str(key), _BUCKET_KEYS)}; "
                                       f"expected duration or lateness"))
            continue
        try:
            _buckets(bounds)
        except ValueError as exc:
            problems.append((str(key), str(exc)))
    return problems


def _buckets(value: Any) -> tuple[float, ...] | None:
    """Bucket bounds in seconds (numbers or durations such as 250ms), strictly increasing; None: default."""
    if value is None:
        return None
    expected = "expected null (the default buckets) or a list of increasing durations such as [10ms, 1s, 1m]"
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{expected}, got {value!r}")
    try:
        bounds = tuple(parse_duration(item) for item in value)
    except ValueError:
        raise ValueError(f"{expected}, got {value!r}") from None
    if bounds[0] <= 0 or any(b <= a for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"{expected} (each greater than zero and than the one before), got {value!r}")
    return bounds


_CHECKS: dict[str, Callable[[Any], list[tuple[str, str]]]] = {
    "enabled": _check_enabled,
    "address": _check_address,
    "sample_interval": _check_interval,
    "process_metrics": _check_enabled,
    "buckets": _check_buckets,
}
