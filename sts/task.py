"""Tasks and their runs, and the error a rejected task raises."""

from sts_core.errors import TaskValidationError
from sts_core.run import Run, RunState
from sts_core.runcontext import current_run
from sts_core.task import Task, create_task

__all__ = ["Run", "RunState", "Task", "TaskValidationError", "create_task", "current_run"]
