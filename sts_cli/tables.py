"""Plain-text tables and timestamps for the CLI."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sts_core.logsetup import offset_text

_BREAK_AFTER = re.compile(r"(?<=[ ,:_])")
#: A column fitted to the terminal keeps at least this many characters.
MIN_FITTED_WIDTH = 12


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    max_width: int = 60,
    width: int | None = None,
    wrap: Collection[int] = (),
) -> str:
    """Left-aligned columns separated by two spaces; cells longer than ``max_width`` are cut.

    With ``width`` (the terminal's), the columns numbered in ``wrap`` shrink until each line
    fits in it, and their text wraps onto continuation lines instead of being cut.
    """
    cells = [[_cell(value, max_width if i not in wrap else None) for i, value in enumerate(row)] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    if width is not None and wrap:
        _fit(widths, sorted(wrap), width - 2 * (len(headers) - 1))
    lines = [_line([h.upper() for h in headers], widths)]
    for row in cells:
        parts = [_wrapped(text, widths[i]) if i in wrap else [_cut(text, widths[i])] for i, text in enumerate(row)]
        for n in range(max(len(part) for part in parts)):
            lines.append(_line([part[n] if n < len(part) else "" for part in parts], widths))
    return "\n".join(lines)


def format_time(value: datetime | None, zone: ZoneInfo) -> str | None:
    """``2026-12-08 09:30:00+01:00`` in ``zone`` (the config's ``timezone``), ``...Z`` for UTC."""
    if value is None:
        return None
    local = value.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S") + offset_text(local)


def _fit(widths: list[int], flexible: list[int], total: int) -> None:
    """Shrink the ``flexible`` columns so that all columns add up to at most ``total``; narrow
    columns keep their width and the wide ones share what is left."""
    room = total - sum(w for i, w in enumerate(widths) if i not in flexible)
    for k, i in enumerate(sorted(flexible, key=lambda i: widths[i])):
        share = room // (len(flexible) - k)
        widths[i] = max(min(widths[i], share), MIN_FITTED_WIDTH)
        room -= widths[i]


def _line(texts: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(text.ljust(w) for text, w in zip(texts, widths, strict=True)).rstrip()


def _wrapped(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``, broken after a space, comma, colon or underscore
    where it can be (names like ``config_sections:redis`` have no spaces), anywhere otherwise."""
    lines: list[str] = []
    line = ""
    for token in _BREAK_AFTER.split(text):
        if line and len((line + token).rstrip()) > width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line += token
        while len(line.rstrip()) > width:
            lines.append(line[:width])
            line = line[width:]
    lines.append(line.rstrip())
    return lines


def _cell(value: object, max_width: int | None) -> str:
    text = "-" if value is None or value == "" else str(value).replace("\n", " ")
    return text if max_width is None else _cut(text, max_width)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
