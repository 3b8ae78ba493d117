"""Tasks and their runs."""

from sts_core.model import Run, RunState, Task, create_task
from sts_core.runcontext import current_run

__all__ = ["Run", "RunState", "Task", "create_task", "current_run"]
