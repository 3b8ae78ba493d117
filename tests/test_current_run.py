"""A task function can ask which run it is (``sts.task.current_run``)."""

from __future__ import annotations

import asyncio

from sts.config import Config
from sts.task import Task, current_run
from sts_core.scheduler import AsyncTaskScheduler

seen: list[tuple[str, int, str]] = []


def sync_job() -> None:
    run = current_run()
    assert run is not None
    seen.append(("sync", run.attempt, run.id))


async def async_job() -> None:
    run = current_run()
    assert run is not None
    seen.append(("async", run.attempt, run.id))


def flaky_job() -> None:
    run = current_run()
    assert run is not None
    seen.append(("flaky", run.attempt, run.id))
    if run.attempt == 1:
        raise RuntimeError("first attempt fails")


def test_sync_async_and_retried_tasks_see_their_own_run() -> None:
    seen.clear()

    async def main() -> list:
        async with AsyncTaskScheduler(Config()) as scheduler:
            runs = [
                await scheduler.run(Task("s", function=sync_job)),
                await scheduler.run(Task("a", function=async_job)),
                await scheduler.run(Task("f", function=flaky_job, retries=1, retry_delay=0)),
            ]
            return runs

    runs = asyncio.run(main())
    assert [(kind, attempt) for kind, attempt, _ in seen] == [("sync", 1), ("async", 1), ("flaky", 1), ("flaky", 2)]
    assert seen[0][2] == runs[0].id and seen[1][2] == runs[1].id and seen[3][2] == runs[2].id
    assert current_run() is None
