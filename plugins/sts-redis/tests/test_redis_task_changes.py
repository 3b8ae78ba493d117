"""Another process changes tasks while a scheduler runs: what fires afterwards is the version as
stored, never the plan this process knew before (a scheduled fire whose change notice is not applied
yet reloads the task; a manual fire always reads it)."""
from __future__ import annotations

import asyncio

import pytest

from sts.config import Config
from sts.plugin import TaskNotFoundError
from sts.scheduler import AsyncTaskScheduler
from sts.task import Task, current_run
from sts_core.testing import until

calls: list[tuple[str, str, int]] = []


def record(label: str = "") -> None:
    run = current_run()
    calls.append((run.task_name, label, run.task_version))


def config(url: str) -> Config:
    return Config({
        "scheduler_backend": "redis",
        "redis": {"url": url, "key_prefix": "rv", "lease_time": "5s", "poll_interval": "1s"},
        "scheduler": {"shutdown_grace": "1s"},
    })


def scheduler(url: str) -> AsyncTaskScheduler:
    s = AsyncTaskScheduler(config(url))
    s.register_function("record", record)
    return s


@pytest.fixture(autouse=True)
def _clear() -> None:
    calls.clear()


N = 40


async def _replace_run_once_tasks(redis_url: str) -> list[tuple[str, str, int]]:
    running, api_like = scheduler(redis_url), scheduler(redis_url)
    await running.start()
    try:
        await api_like.add_tasks([Task(f"x{i:02d}", function="record", kwargs={"label": "v1"}) for i in range(N)])
        await until(lambda: len(calls) >= N, timeout=10, what="the v1 runs")
        await asyncio.sleep(0.3)
        calls.clear()
        # another process replaces them: each v2 is due now (a task without trigger runs once)
        await api_like.add_tasks([Task(f"x{i:02d}", function="record", kwargs={"label": "v2"}) for i in range(N)],
                                 replace=True)
        await until(lambda: len(calls) >= N, timeout=10, what="the runs after the replace")
        await asyncio.sleep(0.3)
        return list(calls)
    finally:
        await running.stop()
        await api_like.close()


def test_a_replaced_task_due_now_runs_its_new_version(redis_url: str) -> None:
    after = asyncio.run(_replace_run_once_tasks(redis_url))
    stale = [c for c in after if c[1] != "v2"]
    assert not stale, f"{len(stale)} of {len(after)} runs after the replace ran the OLD version: {stale[:5]}"


def test_fire_now_right_after_another_process_replaced_the_task_fires_the_new_version(redis_url: str) -> None:
    async def main() -> None:
        running, api_like = scheduler(redis_url), scheduler(redis_url)
        await api_like.add_task(Task("m", function="record", kwargs={"label": "v1"}, every="1h"))
        await running.start()
        try:
            await asyncio.sleep(0.3)
            await api_like.add_task(Task("m", function="record", kwargs={"label": "v2"}, every="1h"), replace=True)
            run = await running.fire_now("m")
            assert run.task_version == 2, f"fire_now queued version {run.task_version} after version 2 was stored"
        finally:
            await running.stop()
            await api_like.close()

    asyncio.run(main())


def test_fire_now_right_after_another_process_deleted_the_task_raises(redis_url: str) -> None:
    async def main() -> None:
        running, api_like = scheduler(redis_url), scheduler(redis_url)
        await api_like.add_task(Task("d", function="record", every="1h"))
        await running.start()
        try:
            await asyncio.sleep(0.3)
            await api_like.remove_task("d")
            with pytest.raises(TaskNotFoundError):
                await running.fire_now("d")
        finally:
            await running.stop()
            await api_like.close()

    asyncio.run(main())


def test_fire_now_after_another_process_replaced_many_tasks_fires_the_new_version(redis_url: str) -> None:
    async def main() -> None:
        running, api_like = scheduler(redis_url), scheduler(redis_url)
        tasks = [Task(f"o{i:03d}", function="record", every="1h") for i in range(200)]
        await api_like.add_tasks([*tasks, Task("m", function="record", kwargs={"label": "v1"}, every="1h")])
        await running.start()
        try:
            await asyncio.sleep(1.0)
            await api_like.add_tasks([*tasks, Task("m", function="record", kwargs={"label": "v2"}, every="1h")],
                                     replace=True)
            run = await running.fire_now("m")
            assert run.task_version == 2, f"fire_now queued version {run.task_version} after version 2 was stored"
        finally:
            await running.stop()
            await api_like.close()

    asyncio.run(main())
