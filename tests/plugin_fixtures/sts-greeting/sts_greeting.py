"""A third-party STS task type: ``type: greeting`` with ``params: {who: ...}`` says hello."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sts.plugin import ExecutionContext, Problem, RegisterTaskType, Task, hookimpl


class GreetingTaskType:
    """Prints ``hello, <who>`` and returns it as the run's result."""

    def validate(self, task: Task, resolve_function: Callable[[Any], Any]) -> list[Problem]:
        """``params.who`` must be a non-empty text."""
        who = task.params.get("who")
        if not isinstance(who, str) or not who:
            return [Problem("params.who", f"required: the name to greet, e.g. params: {{who: world}}; got {who!r}")]
        return []

    def prepare(self, task: Task, resolve_function: Callable[[Any], Any]) -> str:
        """The greeting, built once per task version."""
        return f"hello, {task.params['who']}"

    async def execute(self, context: ExecutionContext) -> str:
        """Print the greeting, keep it in the run's output and return it."""
        print(context.prepared, flush=True)
        context.output.write(context.prepared + "\n")
        return context.prepared


@hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    """Register the ``greeting`` task type."""
    register("greeting", GreetingTaskType())
