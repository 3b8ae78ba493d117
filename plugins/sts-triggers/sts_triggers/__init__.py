"""The standard STS trigger kinds: ``interval``, ``cron``, ``date`` and ``delay``.

The hook implementations live in ``sts_triggers.plugin``; each trigger class lives in its own
module and can also be built directly (all datetimes aware, UTC in and out).
"""

from sts_triggers.cron import CronTrigger
from sts_triggers.date import DateTrigger
from sts_triggers.delay import DelayTrigger
from sts_triggers.interval import IntervalTrigger

__all__ = ["CronTrigger", "DateTrigger", "DelayTrigger", "IntervalTrigger"]
