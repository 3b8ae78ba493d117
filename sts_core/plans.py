"""A task compiled for execution: its trigger, task type and effective settings.

Compiling once per task version keeps the per-run path free of lookups: the engine reads
plain attributes of a ``TaskPlan`` on every fire and every attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from sts_core.interfaces import TaskType, Trigger
from sts_core.model import Task
from sts_core.plugins import PluginManager
from sts_core.retry import RetryPolicy
from sts_core.validation import compile_trigger


@attrs.define(slots=True)
class TaskPlan:
    """Everything the engine needs to fire and run one task version."""

    task: Task
    trigger: Trigger | None
    task_type: TaskType
    prepared: Any
    retry: RetryPolicy
    timeout: float | None
    misfire: str
    misfire_grace: float
    jitter: float
    settings: dict[str, Any]
    parents: frozenset[str]


def _pick(task_value: Any, config_value: Any) -> Any:
    return config_value if task_value is None else task_value


def compile_plan(
    task: Task,
    *,
    config: Any,
    plugins: PluginManager,
    resolve_function: Callable[[Any], Callable[..., Any]],
) -> TaskPlan:
    """Build the plan of ``task`` (already validated) from the task, the config and the plugins."""
    timezone = config.get("timezone", "UTC")
    trigger = compile_trigger(task, plugins, timezone)
    task_type = plugins.lookup("task type", task.type).value
    retry = RetryPolicy(
        retries=_pick(task.retries, config.get("retries", 0)),
        delay=_pick(task.retry_delay, config.seconds("retry_delay")),
        backoff=_pick(task.backoff, float(config.get("backoff", 1.0))),
        max_delay=_pick(task.max_retry_delay, config.seconds("max_retry_delay")),
        jitter=_pick(task.retry_jitter, config.seconds("retry_jitter") or 0.0),
    )
    settings = {
        "executor": _pick(task.executor, config.get("executor.type", "thread")),
        "kill_grace": config.seconds("executor.kill_grace"),
        "timezone": task.timezone or timezone,
    }
    return TaskPlan(
        task=task,
        trigger=trigger,
        task_type=task_type,
        prepared=task_type.prepare(task, resolve_function),
        retry=retry,
        timeout=_pick(task.timeout, config.seconds("timeout")),
        misfire=_pick(task.misfire, config.get("misfire", "coalesce")),
        misfire_grace=_pick(task.misfire_grace_time, config.seconds("misfire_grace_time")),
        jitter=task.jitter or 0.0,
        settings=settings,
        parents=frozenset(task.parent_tasks),
    )
