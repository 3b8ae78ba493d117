"""The scheduler: ``TaskScheduler`` (blocking) and ``AsyncTaskScheduler`` (asyncio), and the errors
their methods raise."""

from sts_core.blocking import TaskScheduler
from sts_core.errors import SchedulerStateError, TaskExistsError, TaskNotFoundError
from sts_core.scheduler import AsyncTaskScheduler

__all__ = ["AsyncTaskScheduler", "SchedulerStateError", "TaskExistsError", "TaskNotFoundError", "TaskScheduler"]
