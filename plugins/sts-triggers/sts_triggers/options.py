"""The task options of the standard trigger kinds, each a shorthand for its trigger.

``every: 30s`` on a task means ``trigger: {kind: interval, every: 30}``; likewise ``cron``,
``at`` (kind ``date``) and ``delay``. Each converter checks the value when the task is created
and keeps it in the form the trigger's ``from_spec`` reads; each raises ``ValueError`` with
what was expected.
"""

from __future__ import annotations

from typing import Any

from sts.plugin import Option, converters, parse_duration
from sts_triggers.cronexpr import fields_of, normalize


def interval(value: Any) -> float:
    """Seconds greater than zero, from seconds or text such as ``1h30m``."""
    seconds = parse_duration(value)
    if not seconds > 0:
        raise ValueError("expected an interval greater than zero")
    return seconds


def cron_expression(value: Any) -> str:
    """The expression as given, once it is known to be a valid cron expression or alias."""
    fields_of(normalize(value))
    return value


EVERY = Option("every", interval, doc="fire every this long (seconds or text such as 30s, 5m, 1h30m)")
CRON = Option("cron", cron_expression, doc="fire at the times a cron expression matches ('*/5 * * * *', '@daily')")
AT = Option("at", converters.optional_datetime, doc="fire once, at this ISO 8601 date-time")
DELAY = Option("delay", parse_duration, doc="fire once, this long after the task is added")
