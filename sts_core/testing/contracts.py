"""What the conformance suites share: default settings, test data, and running a backend per test.

``StoreContract`` (``store_contract``) and ``BrokerContract`` (``broker_contract``) build
on ``_BackendSuite``; import them from ``sts_core.testing``. Kernel modules are imported
where they are used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sts_core.testing.clock import _REAL_TIMEOUT, FakeClock

if TYPE_CHECKING:
    from sts_core.interfaces import Backend
    from sts_core.run import Run
    from sts_core.task import Task

#: The settings ``make_backend`` receives unless a test overrides some of them.
DEFAULT_SETTINGS: dict[str, Any] = {"lease_time": 30.0, "max_runs_per_task": 1000, "max_age": None}


def _task(name: str, **options: Any) -> Task:
    from sts_core.task import Task

    if "parent_tasks" not in options:
        options.setdefault("every", 30)
    return Task(name, function="sts_core.testing:noop", **options)


def _run(task_name: str, scheduled_for: datetime, **fields: Any) -> Run:
    from sts_core.run import Run, fire_id, new_run_id

    fields.setdefault("id", new_run_id())
    fields.setdefault("task_version", 1)
    return Run(
        task_name=task_name,
        scheduled_for=scheduled_for,
        fire_id=fire_id(task_name, scheduled_for),
        created_at=scheduled_for,
        **fields,
    )


async def _finish(awaitable: Awaitable[Any]) -> Any:
    """Await something the test expects to complete promptly, with a real-time guard."""
    return await asyncio.wait_for(awaitable, _REAL_TIMEOUT)


class _BackendSuite:
    """Builds a backend per test from the ``make_backend`` fixture, opens it, runs, closes it."""

    def run_backend(
        self,
        make_backend: Callable[[FakeClock, dict[str, Any]], Backend],
        body: Callable[[Backend, FakeClock], Awaitable[Any]],
        **settings: Any,
    ) -> Any:
        clock = FakeClock()
        backend = make_backend(clock, {**DEFAULT_SETTINGS, **settings})

        async def main() -> Any:
            await backend.store.open()
            await backend.broker.open()
            try:
                return await body(backend, clock)
            finally:
                await backend.broker.close()
                await backend.store.close()

        return asyncio.run(main())
