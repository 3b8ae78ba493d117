"""The standard STS task types: ``python`` and ``shell``.

The plugin's hooks live in ``sts_tasks.plugin``; each type lives in its own module. The
exceptions a run can fail with are importable from here for ``except`` clauses and tests.
"""

from sts_tasks.errors import CommandFailed, RemoteError
from sts_tasks.python_type import PythonTaskType
from sts_tasks.shell_type import ShellTaskType

__all__ = ["CommandFailed", "PythonTaskType", "RemoteError", "ShellTaskType"]
