"""Synchronous functions that hang past their timeout do not starve the other tasks.

These tests run in short real time (threads cannot be driven by the fake clock): each hung
function waits on a ``threading.Event`` that the test sets at the end, so every thread ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from sts_core.clock import SystemClock
from sts_core.model import RunState, Task
from sts_core.scheduler import AsyncTaskScheduler
from tests.conftest import quiet_config


def test_a_healthy_task_runs_on_time_beside_a_task_whose_sync_function_hangs() -> None:
    release = threading.Event()
    healthy_calls: list[float] = []

    def hang() -> None:
        release.wait(30)

    def healthy() -> None:
        healthy_calls.append(0.0)

    async def main() -> tuple[list, list]:
        config = quiet_config(executor={"max_workers": 2})
        try:
            async with AsyncTaskScheduler(config, clock=SystemClock()) as scheduler:
                await scheduler.add_task(Task("hang", hang, every=0.3, timeout=0.2))
                await scheduler.add_task(Task("healthy", healthy, every=0.3, timeout=2))
                await scheduler.start()
                await asyncio.sleep(2.0)
                healthy_runs = await scheduler.runs("healthy", limit=100)
                hang_runs = await scheduler.runs("hang", limit=100)
                await scheduler.stop(grace=0.5)
        finally:
            release.set()
        return healthy_runs, hang_runs

    healthy_runs, hang_runs = asyncio.run(main())
    healthy_states = Counter(run.state for run in healthy_runs)
    fires = len(healthy_runs)
    assert fires >= 5, healthy_states
    assert healthy_states[RunState.TIMED_OUT] == 0, healthy_states
    assert healthy_states[RunState.SKIPPED] <= 1, healthy_states
    assert len(healthy_calls) >= fires - 1, (len(healthy_calls), healthy_states)
    # The hung task keeps timing out, each time 0.2 s after its function started.
    hang_states = Counter(run.state for run in hang_runs)
    assert hang_states[RunState.TIMED_OUT] >= 4, hang_states
