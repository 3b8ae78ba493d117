"""Hook implementations of the ``tasks`` plugin: registers the ``python`` and ``shell`` task types."""

from __future__ import annotations

from sts.plugin import RegisterTaskType, hookimpl
from sts_tasks.options import ARGS, COMMAND, EXECUTOR, FUNCTION, KWARGS
from sts_tasks.python_type import PythonTaskType
from sts_tasks.shell_type import ShellTaskType


@hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    """Register ``python`` (options ``function``, ``args``, ``kwargs``, ``executor``) and ``shell``
    (option ``command``)."""
    register("python", PythonTaskType(), options=[FUNCTION, ARGS, KWARGS, EXECUTOR])
    register("shell", ShellTaskType(), options=[COMMAND])
