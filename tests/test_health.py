"""``health()``: what a process reports about its loops, for metrics and health checks."""

from __future__ import annotations

import asyncio

from sts_core.task import Task


def test_health_before_start_says_not_running(make_scheduler) -> None:
    async def main() -> None:
        async with make_scheduler() as scheduler:
            health = scheduler.health()
        assert not health.running and health.roles == () and health.runs_in_flight == 0
        assert health.beats == {}

    asyncio.run(main())


def test_health_reports_roles_runs_in_flight_and_loop_beats(make_scheduler, clock) -> None:
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()

    async def main() -> None:
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("slow", slow))
            await scheduler.start()
            await clock.settle()
            busy = scheduler.health()
            clock.advance(5)
            await clock.settle()
            later = scheduler.health()
            release.set()
            await scheduler.wait_idle()
            await clock.settle()
            idle = scheduler.health()
            await scheduler.stop()
            stopped = scheduler.health()
        assert busy.running and busy.roles == ("scheduler", "worker") and busy.runs_in_flight == 1
        assert set(busy.beats) == {"scheduler", "worker"} and not busy.backend_unavailable
        assert later.beats["worker"] > busy.beats["worker"]  # beats while every run is still busy
        assert idle.runs_in_flight == 0
        assert not stopped.running and stopped.roles == ()

    asyncio.run(main())
