"""A failed run's traceback starts at the task's own code: STS's frames that called it are left out."""

from __future__ import annotations

import asyncio

import pytest

from sts_core.task import Task
from sts_core.tracebacks import task_traceback


def _load_rows() -> None:
    raise ValueError("row 7 has no id")


def sync_job() -> None:
    _load_rows()


async def async_job() -> None:
    _load_rows()


@pytest.mark.parametrize("job", [sync_job, async_job], ids=["thread", "coroutine"])
def test_the_traceback_of_a_failed_run_starts_in_the_task_function(make_scheduler, clock, job) -> None:
    async def main() -> str:
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("load", job))
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            (run,) = await scheduler.runs("load")
            await scheduler.stop()
        return run.traceback

    text = asyncio.run(main())
    lines = text.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert f"in {job.__name__}" in lines[1]
    assert "sts_core" not in text and "sts_tasks" not in text
    assert "in _load_rows" in text and lines[-1] == "ValueError: row 7 has no id"


def test_a_failure_inside_sts_itself_keeps_every_frame() -> None:
    try:
        _load_rows()
    except ValueError as exc:
        error = exc
    text = task_traceback(error, {"test_tracebacks", "tests"})
    assert "in _load_rows" in text  # every frame is "internal": nothing is dropped
