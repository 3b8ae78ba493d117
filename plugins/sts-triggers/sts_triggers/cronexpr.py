"""Checking cron expressions and turning aliases into fields, with errors a user can act on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cronsim import CronSim, CronSimError

from sts.plugin import short_repr

#: ``@name`` shortcuts and the five fields each stands for.
ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIVE = ("minute", "hour", "day-of-month", "month", "day-of-week")
_SIX = ("second", *_FIVE)
_EXPECTED = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L or LW, and a day that exists in the months given",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT (0 and 7 are Sunday), optionally 5L or MON#2",
}
_FORMS = "a value, *, a list 1,15, a range 1-5 or a step */10"


def normalize(expression: Any) -> str:
    """The expression with runs of whitespace collapsed; ``ValueError`` when it is not text."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"expected a cron expression such as '*/5 * * * *' or '@daily', got {short_repr(expression)}")
    return " ".join(expression.split())


def fields_of(expression: str) -> str:
    """The 5 or 6 cron fields of a normalized ``expression`` (aliases expanded), checked.

    Raises ``ValueError`` naming the bad field, its text and the values it accepts.
    """
    if expression.startswith("@"):
        fields = ALIASES.get(expression.lower())
        if fields is None:
            raise ValueError(
                f"unknown cron alias {short_repr(expression)}; expected one of {', '.join(ALIASES)} or 5 cron fields"
            )
        return fields
    parts = expression.split(" ")
    if len(parts) not in (5, 6):
        raise ValueError(
            f"invalid cron expression {short_repr(expression)}: expected 5 fields (minute hour day-of-month month "
            f"day-of-week), or 6 with seconds first, got {len(parts)}"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(_explain(expression, parts, str(exc))) from None
    return expression


def _explain(expression: str, parts: list[str], reason: str) -> str:
    names = _FIVE if len(parts) == 5 else _SIX
    field = reason.removeprefix("Bad ").strip()
    if field not in names:
        return f"invalid cron expression {short_repr(expression)}: {reason}"
    text = parts[names.index(field)]
    return (
        f"invalid cron expression {short_repr(expression)}: bad {field} field {short_repr(text)}; "
        f"expected {_EXPECTED[field]}, written as {_FORMS}"
    )
