"""Hook implementations of the ``triggers`` plugin: the standard trigger kinds."""

from __future__ import annotations

from sts.plugin import RegisterTrigger, hookimpl
from sts_triggers.cron import CronTrigger
from sts_triggers.date import DateTrigger
from sts_triggers.delay import DelayTrigger
from sts_triggers.interval import IntervalTrigger


@hookimpl
def register_triggers(register: RegisterTrigger) -> None:
    """Register ``interval``, ``cron``, ``date`` and ``delay``."""
    register("interval", IntervalTrigger.from_spec)
    register("cron", CronTrigger.from_spec)
    register("date", DateTrigger.from_spec)
    register("delay", DelayTrigger.from_spec)
