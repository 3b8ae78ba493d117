"""Synchronous functions that hang past their timeout do not starve the other tasks.

These tests run in short real time (threads cannot be driven by the fake clock): each hung
function waits on a ``threading.Event`` that the test sets at the end, so every thread ends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from typing import Any

import pytest

from sts_core import events as ev
from sts_core.blocking import TaskScheduler
from sts_core.clock import SystemClock
from sts_core.plugins import PluginManager
from sts_core.run import Run, RunState
from sts_core.scheduler import AsyncTaskScheduler
from sts_core.task import Task
from sts_core.testing import EventRecorder
from tests.conftest import quiet_config


@pytest.fixture
def release() -> Any:
    """The event every hung function waits on; set at the end so their threads finish."""
    gate = threading.Event()
    yield gate
    gate.set()


def test_a_healthy_task_runs_on_time_beside_a_task_whose_sync_function_hangs(release) -> None:
    healthy_calls: list[float] = []

    def hang() -> None:
        release.wait(30)

    def healthy() -> None:
        healthy_calls.append(0.0)

    async def main() -> tuple[list[Run], list[Run]]:
        config = quiet_config(executor={"max_workers": 2})
        async with AsyncTaskScheduler(config, clock=SystemClock()) as scheduler:
            await scheduler.add_task(Task("hang", hang, every=0.3, timeout=0.2))
            await scheduler.add_task(Task("healthy", healthy, every=0.3, timeout=2))
            await scheduler.start()
            await asyncio.sleep(2.0)
            healthy_runs = await scheduler.runs("healthy", limit=100)
            hang_runs = await scheduler.runs("hang", limit=100)
            release.set()
            await scheduler.stop(grace=0.5)
        return healthy_runs, hang_runs

    healthy_runs, hang_runs = asyncio.run(main())
    healthy_states = Counter(run.state for run in healthy_runs)
    fires = len(healthy_runs)
    assert fires >= 5, healthy_states
    assert healthy_states[RunState.TIMED_OUT] == 0, healthy_states
    assert healthy_states[RunState.SKIPPED] <= 1, healthy_states
    assert len(healthy_calls) >= fires - 1, (len(healthy_calls), healthy_states)
    # The hung task timed out once, 0.2 s after its function started; while that call still hangs,
    # its later runs fail at once, saying why, rather than taking one more thread each.
    hang_states = Counter(run.state for run in hang_runs)
    assert hang_states[RunState.TIMED_OUT] == 1, hang_states
    assert hang_states[RunState.FAILED] >= 3, hang_states
    assert {run.error_type for run in hang_runs if run.state is RunState.FAILED} == {"TaskStillRunningError"}


def test_a_task_that_hangs_every_time_holds_max_instances_threads_so_the_cap_is_never_reached(release) -> None:
    healthy_calls: list[int] = []
    hang_calls: list[int] = []

    def hang() -> None:
        hang_calls.append(1)
        release.wait(30)

    async def main() -> tuple[list[Run], Any]:
        config = quiet_config(executor={"max_workers": 1, "max_abandoned_threads": 1})
        async with AsyncTaskScheduler(config, clock=SystemClock()) as scheduler:
            await scheduler.add_task(Task("hang", hang, every=0.2, timeout=0.1))
            await scheduler.add_task(Task("healthy", lambda: healthy_calls.append(1), every=0.2, timeout=2))
            await scheduler.start()
            await asyncio.sleep(2.0)
            healthy_runs = await scheduler.runs("healthy", limit=100)
            health, hung_calls = scheduler.health(), len(hang_calls)
            release.set()
            await asyncio.sleep(0.2)  # the hung call returns: the task may start again
            after = await scheduler.run("hang")
            await scheduler.stop(grace=0.5)
        return healthy_runs, (health, hung_calls, after)

    healthy_runs, (health, hung_calls, after) = asyncio.run(main())
    assert Counter(run.state for run in healthy_runs)[RunState.SUCCEEDED] >= 7
    assert hung_calls == 1, "one hung call at a time"
    assert health.abandoned_threads == 1
    assert after.state is RunState.SUCCEEDED


def test_an_abandoned_thread_is_logged_once_with_its_task_reported_and_replaced(
    make_scheduler, clock, release, caplog
) -> None:
    events = EventRecorder()

    def hang() -> None:
        release.wait(30)

    async def main() -> tuple[Any, Run]:
        manager = PluginManager(plugins=[("events", events)])
        async with make_scheduler(plugins=manager, executor={"max_workers": 1}) as scheduler:
            await scheduler.add_task(Task("hang", hang, timeout=0.05))
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            health = scheduler.health()
            # The only thread still runs `hang`: a replacement runs this one.
            quick = await asyncio.wait_for(scheduler.run(Task("quick", lambda: "done", timeout=1)), 5)
            await scheduler.stop()
        return health, quick

    with caplog.at_level(logging.WARNING, logger="sts.engine"):
        health, quick = asyncio.run(main())
    assert quick.state is RunState.SUCCEEDED
    assert health.abandoned_threads == 1 and health.waiting_for_thread == 0
    abandoned = [record.getMessage() for record in caplog.records if "abandoned" in record.getMessage()]
    assert len(abandoned) == 1 and "task 'hang'" in abandoned[0] and "replaced" in abandoned[0]
    assert "executor: process" in abandoned[0]
    [event] = [e for e in events.seen if isinstance(e, ev.ThreadAbandoned)]
    assert (event.task_name, event.abandoned_threads, event.max_abandoned_threads, event.replaced) == (
        "hang", 1, 32, True)


def test_past_the_cap_a_run_waits_for_a_thread_without_being_charged_a_timeout(
    make_scheduler, clock, release, caplog
) -> None:
    def hang() -> None:
        release.wait(30)

    async def main() -> tuple[Any, Run]:
        config = {"executor": {"max_workers": 1, "max_abandoned_threads": 0}}
        async with make_scheduler(**config) as scheduler:
            await scheduler.add_task(Task("hang", hang, timeout=0.05))
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            waiting = asyncio.ensure_future(scheduler.run(Task("quick", lambda: "done", timeout=0.1)))
            await asyncio.sleep(0.3)  # three times its timeout, waiting for the hung thread
            health = scheduler.health()
            assert not waiting.done()
            release.set()
            quick = await asyncio.wait_for(waiting, 5)
            await scheduler.stop()
        return health, quick

    with caplog.at_level(logging.WARNING, logger="sts.engine"):
        health, quick = asyncio.run(main())
    assert health.abandoned_threads == 1 and health.waiting_for_thread == 1
    assert quick.state is RunState.SUCCEEDED
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert any("task 'hang'" in message and "NOT replaced" in message for message in errors)
    assert any("thread pool full" in message and "executor.max_abandoned_threads=0" in message
               for message in errors)


def test_runs_waiting_for_the_only_thread_are_not_charged_the_wait_against_their_timeout(make_scheduler, clock) -> None:
    def slow() -> str:
        threading.Event().wait(0.15)
        return "done"

    async def main() -> list[Run]:
        async with make_scheduler(executor={"max_workers": 1}) as scheduler:
            for name in ("a", "b", "c"):  # due at once: two of them wait 0.15 s or more for the thread
                await scheduler.add_task(Task(name, slow, timeout=0.25))
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            runs = [run for name in ("a", "b", "c") for run in await scheduler.runs(name)]
            await scheduler.stop()
        return runs

    runs = asyncio.run(main())
    assert [run.state for run in runs] == [RunState.SUCCEEDED] * 3


def test_a_hung_call_that_returned_while_the_scheduler_was_stopped_no_longer_holds_back_its_task() -> None:
    """The count of a task's hung calls goes down when the call returns, also while no loop runs."""
    gate = threading.Event()
    returned = threading.Event()

    def hang() -> None:
        if not gate.is_set():
            gate.wait(10)
            returned.set()

    sched = TaskScheduler(quiet_config())
    sched.add_task(Task("hang", hang, timeout=0.1))
    sched.start()
    try:
        deadline = time.monotonic() + 5
        while sched.health().abandoned_threads == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sched.health().abandoned_threads == 1
    finally:
        sched.stop(grace=0.2)  # the loop that would hear of the return is closed
    gate.set()
    assert returned.wait(5)  # the abandoned call is over
    time.sleep(0.2)
    sched.start()
    try:
        run = sched.run("hang")
    finally:
        sched.stop(grace=0.2)
    assert run.state is RunState.SUCCEEDED, (run.error_type, run.error_message)
