"""Tasks and their runs."""

from sts_core.model import Run, RunState, Task, create_task

__all__ = ["Run", "RunState", "Task", "create_task"]
