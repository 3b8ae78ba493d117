"""The schema of the core config keys: the rule each key must follow and how a broken rule is worded.

``CORE_RULES`` maps every core key path to a ``Check``; ``sts_core/default.yaml`` holds
exactly these keys. ``CORE_KEYS`` and ``CORE_SECTIONS`` are derived from it. ``Config``
(``sts_core.config``) applies the rules; plugins' sections bring their own validators.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sts_core.converters import MAX_COUNT, check_timezone
from sts_core.durations import parse_duration
from sts_core.task import MISFIRE_POLICIES
from sts_core.wording import did_you_mean, one_of, short_repr

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_OUTPUTS = ("stdout", "stderr", "file")
LOG_FORMATS = ("text", "json")
#: Where a synchronous task runs by default (``executor.type``): a pool thread or a child process.
EXECUTORS = ("thread", "process")

# --- rules for the core keys --------------------------------------------------------------------

Check = Callable[[Any], str | None]
"""A rule for one key: returns None when the value is valid, else what was expected."""
_NUMERIC_CHECKS: set[Check] = set()  # rules a ${...} reference (always text) can never satisfy


def _expected(expectation: str, value: Any) -> str:
    return f"expected {expectation}, got {short_repr(value)}"


def _whole(minimum: int, *, optional: bool = False) -> Check:
    expectation = f"a whole number >= {minimum}" + (", or null" if optional else "")

    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return None if value <= MAX_COUNT else _expected(f"a whole number from {minimum} to {MAX_COUNT}", value)
        return _expected(expectation, value)

    _NUMERIC_CHECKS.add(check)
    return check


def _number(minimum: float) -> Check:
    def check(value: Any) -> str | None:
        # float(value), not value: an int too large for a float passes the comparison, then overflows
        if isinstance(value, (int, float)) and not isinstance(value, bool) and minimum <= _as_float(value) < math.inf:
            return None
        return _expected(f"a finite number >= {minimum}", value)

    _NUMERIC_CHECKS.add(check)
    return check


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _duration(*, optional: bool = False, positive: bool = False) -> Check:
    expectation = "a duration " + ("greater than zero " if positive else "") + "such as 30s, 5m or 1h30m"
    expectation += ", or null" if optional else ""

    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError:
            return _expected(expectation, value)
        return _expected(expectation, value) if positive and seconds == 0 else None

    return check


def _choice(choices: tuple[str, ...], *, any_case: bool = False) -> Check:
    def check(value: Any) -> str | None:
        candidate = value.upper() if any_case and isinstance(value, str) else value
        if candidate in choices:
            return None
        hint = did_you_mean(candidate, choices) if isinstance(candidate, str) else ""
        return _expected(f"one of {', '.join(choices)}", value) + hint

    return check


def _text(example: str, *, optional: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if (isinstance(value, str) and value.strip()) or (optional and value is None):
            return None
        return _expected(example, value)

    return check


def _names(value: Any) -> str | None:
    if value is None or (isinstance(value, list) and all(isinstance(item, str) for item in value)):
        return None
    return _expected("a list of plugin names such as [slack, redis]", value)


def _timezone(value: Any) -> str | None:
    if not isinstance(value, str):
        return _expected("an IANA time zone name such as UTC or Europe/Berlin", value)
    try:
        check_timezone(value)
    except ValueError as exc:
        return str(exc)
    return None


#: The rule of every core key, by key path. ``default.yaml`` holds exactly these keys.
CORE_RULES: dict[str, Check] = {
    "scheduler_backend": _text("a backend name such as memory or redis"),
    "broker": _text("a broker name such as rabbitmq, or null for the backend's own", optional=True),
    "timezone": _timezone,
    "retries": _whole(0),
    "retry_delay": _duration(),
    "backoff": _number(1.0),
    "max_retry_delay": _duration(),
    "retry_jitter": _duration(),
    "timeout": _duration(optional=True, positive=True),
    "misfire": _choice(MISFIRE_POLICIES),
    "misfire_grace_time": _duration(),
    "executor.type": _choice(EXECUTORS),
    "executor.max_workers": _whole(1),
    "executor.max_abandoned_threads": _whole(0),
    "executor.concurrency": _whole(1),
    "executor.kill_grace": _duration(),
    "executor.output_limit": _whole(0),
    "executor.max_redeliveries": _whole(0),
    "scheduler.shutdown_grace": _duration(),
    "scheduler.max_batch": _whole(1),
    "history.max_runs_per_task": _whole(1, optional=True),
    "history.max_age": _duration(optional=True),
    "logging.loglevel": _choice(LOG_LEVELS, any_case=True),
    "logging.output": _choice(LOG_OUTPUTS),
    "logging.format": _choice(LOG_FORMATS),
    "log_file": _text("a file path such as sts.log"),
    "plugins.disable": _names,
}
CORE_KEYS: frozenset[str] = frozenset(path.split(".")[0] for path in CORE_RULES)
CORE_SECTIONS: dict[str, frozenset[str]] = {
    section: frozenset(path.split(".")[1] for path in CORE_RULES if path.startswith(section + "."))
    for section in CORE_KEYS
    if any(path.startswith(section + ".") for path in CORE_RULES)
}


def _unknown_key(key: str, known: frozenset[str] | set[str], where: str) -> str:
    return f"unknown key {short_repr(key)}{did_you_mean(key, known)}; expected one of {one_of(known)} {where}"
