"""A stored task that a scheduler process cannot load (its function or trigger kind is missing in
that process) stays scheduled: its runs are recorded failed with the reason, health() names it,
and it runs again once the process can load it. Firing never needs the function."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sts.config import Config
from sts.task import Task
from sts_core.model import RunState
from sts_core.scheduler import AsyncTaskScheduler
from sts_core.testing import until

calls: list[str] = []


def tick() -> str:
    calls.append("tick")
    return "ok"


def config(url: str, **extra: object) -> Config:
    return Config({
        "scheduler_backend": "redis",
        "redis": {"url": url, "key_prefix": "unl", "lease_time": "5s", "poll_interval": "1s"},
        "scheduler": {"shutdown_grace": "1s"},
        **extra,
    })


def test_a_task_whose_function_this_process_cannot_load_stays_scheduled_and_its_runs_fail_clearly(
    redis_url: str,
) -> None:
    async def main() -> None:
        calls.clear()
        adder = AsyncTaskScheduler(config(redis_url))
        adder.register_function("tick", tick)
        await adder.add_task(Task("beat", function="tick", every="1s"))
        await adder.close()
        runner = AsyncTaskScheduler(config(redis_url))  # has no function registered as "tick"
        await runner.start()
        try:
            failed = await until_run(runner, "beat", RunState.FAILED)
            assert failed.error_type == "TaskLoadError"
            assert "no function registered as 'tick'" in (failed.error_message or "")
            assert await runner.next_fire_time("beat") is not None, "the task was unscheduled"
            assert "beat" in runner.health().task_problems
            assert not calls
            # Once the process can load it, it runs again, and the problem is gone.
            runner.register_function("tick", tick)
            succeeded = await until_run(runner, "beat", RunState.SUCCEEDED)
            assert succeeded.task_version == 1
            assert calls
            assert "beat" not in runner.health().task_problems
        finally:
            await runner.stop()

    asyncio.run(main())


def test_a_task_whose_trigger_kind_this_process_lacks_stays_due_and_each_fire_records_why(redis_url: str) -> None:
    async def main() -> None:
        adder = AsyncTaskScheduler(config(redis_url))
        adder.register_function("tick", tick)
        await adder.add_task(Task("beat", function="tick", every="1s"))
        await adder.close()
        runner = AsyncTaskScheduler(config(redis_url, plugins={"disable": ["triggers"]}))
        runner.register_function("tick", tick)
        await runner.start()
        try:
            failed = await until_run(runner, "beat", RunState.FAILED)
            assert failed.error_type == "TaskLoadError"
            assert (failed.error_message or "").startswith("cannot be fired: its trigger cannot be built here")
            next_fire = await runner.next_fire_time("beat")
            assert next_fire is not None, "the task was unscheduled"
            assert next_fire > datetime.now(UTC) + timedelta(seconds=30), "it is retried later, not at once"
            assert runner.health().task_problems["beat"].startswith("its trigger cannot be built here")
        finally:
            await runner.stop()

    asyncio.run(main())


async def until_run(scheduler: AsyncTaskScheduler, name: str, state: RunState):
    found = []

    async def check() -> bool:
        found[:] = await scheduler.runs(name=name, state=state, limit=1)
        return bool(found)

    await until(check, timeout=10, what=f"a {state.value} run of {name}")
    return found[0]
