"""Helpers for plugins' config sections: checking keys with a "did you mean", durations and counts.

A plugin registers its section with ``register_config_sections(register)``, giving a validator
that returns ``(key_path, message)`` problems. ``check_section`` is the loop every such
validator needs; ``duration_check`` and ``count_check`` are the checks most keys need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sts_core.wording import did_you_mean, short_repr

KeyCheck = Callable[[Any], "str | Sequence[tuple[str, str]] | None"]
"""A check of one key's value: None (or no pairs) when valid, else a message about the key, or
``(sub_path, message)`` pairs about what is below it (``""`` for the key itself, ``"[2]"`` for a
list item)."""


def check_section(name: str, section: Mapping[str, Any], checks: Mapping[str, KeyCheck]) -> list[tuple[str, str]]:
    """Problems in the config section ``name`` as ``(key_path, message)``, paths relative to it.

    A key without a check is unknown, reported with a "did you mean" among the checked keys;
    every other key's value goes through its check.
    """
    problems: list[tuple[str, str]] = []
    for key, value in section.items():
        check = checks.get(str(key))
        if check is None:
            problems.append((str(key), f"unknown {name} option{did_you_mean(str(key), checks)}"))
            continue
        found = check(value)
        if isinstance(found, str):
            problems.append((str(key), found))
        elif found:
            problems.extend((_below(str(key), path), message) for path, message in found)
    return problems


def _below(key: str, path: str) -> str:
    """The key path of ``path`` under ``key``: ``key.sub``, ``key[2]`` for a list item, or ``key``."""
    if not path:
        return key
    return f"{key}{path}" if path.startswith("[") else f"{key}.{path}"


def duration_check(*, allow_zero: bool = False) -> KeyCheck:
    """A check of a duration option: greater than zero (or also zero), such as ``30s``."""
    from sts_core.durations import parse_duration

    def check(value: Any) -> str | None:
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = -1.0
        if seconds > 0 or (allow_zero and seconds == 0):
            return None
        least = "of zero or more" if allow_zero else "greater than zero"
        return f"expected a duration {least} such as 30s, got {short_repr(value)}"

    return check


def count_check(minimum: int = 1) -> KeyCheck:
    """A check of a whole-number option of ``minimum`` or more."""

    def check(value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return None
        return f"expected a whole number of {minimum} or more, got {short_repr(value)}"

    return check
