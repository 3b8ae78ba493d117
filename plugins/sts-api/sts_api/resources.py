"""What the API returns: tasks, runs, plugins and health as JSON-safe data.

A task resource is ``{"task": <definition>, "state": "active" | "paused", "next_fire": ...}``:
the definition is exactly what a task file entry holds (``Task.to_dict``, with ``version``), so a
client can change it and ``PUT`` it back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from sts.plugin import Health, Run, Task, TaskValidationError

#: Run fields left out of run lists (``GET /runs/{id}`` has them): they can be long.
LONG_RUN_FIELDS = ("output", "traceback")


def task_definition(task: Task) -> dict[str, Any]:
    """The task as task-file data with its version. A Python callable without an import path
    (possible for tasks added in-process) is shown as ``<callable name>``."""
    try:
        data = task.to_dict()
    except TaskValidationError:
        label = getattr(task.function, "__qualname__", None) or type(task.function).__name__
        data = attrs.evolve(task, function=None).to_dict()
        data["function"] = f"<callable {label}>"
    data["version"] = task.version
    return data


def task_resource(task: Task, next_fire: datetime | None) -> dict[str, Any]:
    """The task resource: definition, whether it is paused, and when it fires next."""
    return {
        "task": task_definition(task),
        "state": "active" if task.enabled else "paused",
        "next_fire": _time(next_fire),
    }


def run_resource(run: Run, *, full: bool = True) -> dict[str, Any]:
    """A run record; without ``full``, without its output and traceback."""
    data = run.to_dict()
    data.setdefault("waits_for_instance", False)  # to_dict leaves these out when false
    data.setdefault("isolated", False)
    if not full:
        for key in LONG_RUN_FIELDS:
            data.pop(key, None)
    return data


def plugin_resource(info: Any, switched_off: frozenset[str]) -> dict[str, Any]:
    """One plugin as ``sts plugins`` lists it."""
    return {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "status": info.status,
        "error": info.error,
        "off_in_config": info.name in switched_off,
        "provides": list(info.provides),
        "hooks": list(info.hooks),
    }


def health_resource(health: Health, backend: str, *, backend_unavailable: bool) -> dict[str, Any]:
    """The scheduler's health as JSON; ``backend_unavailable`` as the caller found it."""
    return {
        "running": health.running,
        "scheduler_id": health.scheduler_id,
        "roles": list(health.roles),
        "backend": backend,
        "backend_unavailable": backend_unavailable,
        "runs_in_flight": health.runs_in_flight,
        "abandoned_threads": health.abandoned_threads,
        "waiting_for_thread": health.waiting_for_thread,
        "beats": {loop: _time(when) for loop, when in health.beats.items()},
        "task_problems": dict(health.task_problems),
    }


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
