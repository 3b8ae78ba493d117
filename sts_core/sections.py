"""Helpers for plugins' config sections: checking keys with a "did you mean", and listen addresses.

A plugin registers its section with ``register_config_sections(register)``, giving a validator
that returns ``(key_path, message)`` problems. ``check_section`` is the loop every such
validator needs; ``parse_address`` reads the ``host:port`` a plugin's server listens on.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sts_core.errors import did_you_mean, short_repr

KeyCheck = Callable[[Any], "str | Sequence[tuple[str, str]] | None"]
"""A check of one key's value: None (or no pairs) when valid, else a message about the key, or
``(sub_path, message)`` pairs about what is below it (``""`` for the key itself, ``"[2]"`` for a
list item)."""

ADDRESS_EXPECTED = "expected host:port such as 127.0.0.1:8080 or [::1]:8080 (port 0 picks a free port)"


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


def parse_address(value: Any, expected: str = ADDRESS_EXPECTED) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"``) as ``(host, port)``; raises ``ValueError`` with ``expected``
    (what a valid value looks like, with the plugin's own example) and the value given."""
    if not isinstance(value, str):
        raise ValueError(f"{expected}; got {short_repr(value)}")
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address needs brackets to be told from its port
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{expected}; got {short_repr(value)}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True when ``host`` (a name or address, IPv6 without brackets) reaches this machine only."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def safe_url(url: str) -> str:
    """``url`` without its password, for messages and logs.

    Works on the text, not a parsed URL, so that a password holding ``/``, ``?`` or ``#``
    (which breaks URL parsing) is hidden too; a ``password=`` query parameter is hidden as well.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        authority_end = rest.rfind("@")
        if authority_end != -1:
            user, colon, _ = rest[:authority_end].partition(":")
            if colon:
                rest = f"{user}:***{rest[authority_end:]}"
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", f"{scheme}{sep}{rest}")


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
