"""Tasks and their runs, and the error a rejected task raises."""

from sts_core.errors import TaskValidationError
from sts_core.model import Run, RunState, Task, create_task
from sts_core.runcontext import current_run

__all__ = ["Run", "RunState", "Task", "TaskValidationError", "create_task", "current_run"]
