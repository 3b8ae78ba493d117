"""Hook implementations of the ``triggers`` plugin: the standard trigger kinds."""

from __future__ import annotations

from sts.plugin import RegisterTrigger, hookimpl
from sts_triggers.cron import CronTrigger
from sts_triggers.date import DateTrigger
from sts_triggers.delay import DelayTrigger
from sts_triggers.interval import IntervalTrigger
from sts_triggers.options import AT, CRON, DELAY, EVERY


@hookimpl
def register_triggers(register: RegisterTrigger) -> None:
    """Register ``interval``, ``cron``, ``date`` and ``delay``, each with its task option
    (``every``, ``cron``, ``at``, ``delay``): the shorthand for a trigger of its kind."""
    register("interval", IntervalTrigger.from_spec, options=[EVERY])
    register("cron", CronTrigger.from_spec, options=[CRON])
    register("date", DateTrigger.from_spec, options=[AT])
    register("delay", DelayTrigger.from_spec, options=[DELAY])
