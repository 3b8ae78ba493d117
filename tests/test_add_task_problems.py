"""Adding a task through the Python API reports every problem the plugins find at once, and
``check_task`` reports the same without storing anything (issue 14)."""

from __future__ import annotations

import asyncio

import pytest

from sts_core.config import Config
from sts_core.errors import TaskValidationError
from sts_core.scheduler import AsyncTaskScheduler
from sts_core.task import Task

# A date trigger before its start: only the trigger built from the whole spec can tell (a bad cron
# expression is refused sooner, by Task itself).
BAD = Task("t", "nosuch_module_for_sts:fn", at="2026-01-01T00:00:00+00:00", start="2026-02-01T00:00:00+00:00",
           alerts={"slak": {}}, tags=["x"])


def _scheduler() -> AsyncTaskScheduler:
    return AsyncTaskScheduler(Config({"logging": {"loglevel": "WARNING"}}))


def test_add_task_reports_the_trigger_the_function_and_the_alerts_together():
    async def main() -> TaskValidationError:
        async with _scheduler() as scheduler:
            with pytest.raises(TaskValidationError) as caught:
                await scheduler.add_task(BAD)
            assert await scheduler.list_tasks() == []
            return caught.value

    error = asyncio.run(main())
    assert [p.key_path for p in error.problems] == ["t.at", "t.function", "t.alerts.slak"]
    assert "is before 'start'" in error.problems[0].message
    assert "cannot import module 'nosuch_module_for_sts'" in error.problems[1].message


def test_check_task_reports_the_same_problems_without_storing():
    async def main() -> tuple[list[tuple[str, str]], list[Task]]:
        async with _scheduler() as scheduler:
            found = await scheduler.check_task(BAD)
            assert await scheduler.check_task(Task("ok", "json:dumps", args=[1], every="1h")) == []
            return [(p.key_path, p.message) for p in found], await scheduler.list_tasks()

    found, stored = asyncio.run(main())
    assert [key for key, _ in found] == ["at", "function", "alerts.slak"]
    assert stored == []
