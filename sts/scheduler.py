"""The scheduler: ``TaskScheduler`` (blocking) and ``AsyncTaskScheduler`` (asyncio)."""

from sts_core.blocking import TaskScheduler
from sts_core.scheduler import AsyncTaskScheduler

__all__ = ["AsyncTaskScheduler", "TaskScheduler"]
