"""The scheduler: ``TaskScheduler`` (blocking) and ``AsyncTaskScheduler`` (asyncio)."""

from sts_core.scheduler import AsyncTaskScheduler, TaskScheduler

__all__ = ["AsyncTaskScheduler", "TaskScheduler"]
