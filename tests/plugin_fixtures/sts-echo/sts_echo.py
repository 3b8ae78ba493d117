"""A third-party STS task type with its own options: ``type: echo`` prints ``message``, ``times`` times."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sts_core.errors import Problem
from sts_core.hookspecs import hookimpl
from sts_core.interfaces import ExecutionContext
from sts_core.options import Option
from sts_core.registry import RegisterTaskType
from sts_core.task import Task


def _message(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected the text to print, got {value!r}")
    return value


def _times(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise ValueError(f"expected a whole number from 1 to 10, got {value!r}")
    return value


class EchoTaskType:
    """Prints ``task.message`` ``task.times`` times and returns the last line."""

    def validate(self, task: Task, resolve_function: Callable[[Any], Any]) -> list[Problem]:
        """An echo task needs a message."""
        return [] if task.message else [Problem("message", "required: an echo task needs a message")]

    def prepare(self, task: Task, resolve_function: Callable[[Any], Any]) -> tuple[str, int]:
        """The message and how often to print it."""
        return task.message, task.times

    async def execute(self, context: ExecutionContext) -> str:
        """Print the message."""
        message, times = context.prepared
        for _ in range(times):
            context.output.write(message + "\n")
        return message


@hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    """Register the ``echo`` task type and its options ``message`` and ``times``."""
    register("echo", EchoTaskType(), options=[
        Option("message", _message, doc="echo: the text to print"),
        Option("times", _times, default=1, doc="echo: how often to print it (1-10)"),
    ])
