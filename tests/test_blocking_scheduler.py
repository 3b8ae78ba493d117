"""The blocking ``TaskScheduler`` in-process: its loop thread, restarts, and stop during a run."""

from __future__ import annotations

import asyncio
import threading
import time

from sts_core.blocking import TaskScheduler
from sts_core.config import Config
from sts_core.model import RunState, Task


def _config() -> Config:
    return Config({"logging": {"loglevel": "WARNING"}})


def test_a_stopped_scheduler_can_be_started_again_on_a_new_loop():
    calls: list[float] = []
    scheduler = TaskScheduler(config=_config())
    scheduler.start()
    scheduler.stop()
    scheduler.add_task(Task("tick", lambda: calls.append(time.monotonic()), every="0.05s"))
    scheduler.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    scheduler.stop()
    assert len(calls) >= 3


def test_run_blocks_until_the_run_is_recorded():
    with TaskScheduler(config=_config()) as scheduler:
        run = scheduler.run(Task("answer", lambda: 42))
    assert (run.state, run.result) == (RunState.SUCCEEDED, 42)


def test_stop_interrupts_a_blocking_run_in_flight_after_the_grace_period():
    async def slow() -> None:
        await asyncio.sleep(30)

    scheduler = TaskScheduler(config=_config())
    scheduler.add_task(Task("slow", slow, every="1h"))
    scheduler.start()
    result = {}
    caller = threading.Thread(target=lambda: result.setdefault("run", scheduler.run("slow")))
    caller.start()
    time.sleep(0.2)
    started = time.monotonic()
    scheduler.stop(grace=0.2)
    caller.join(5)
    assert not caller.is_alive()
    assert time.monotonic() - started < 5
    assert result["run"].state is RunState.INTERRUPTED


def test_add_task_refuses_what_is_not_a_task_with_a_clear_message():
    import pytest

    with TaskScheduler(config=_config()) as scheduler, pytest.raises(TypeError, match="takes a Task"):
        scheduler.add_task("report")


def test_the_blocking_stop_called_on_the_schedulers_own_loop_is_refused_clearly():
    scheduler = TaskScheduler(config=_config())

    async def stop_from_inside() -> None:
        scheduler.stop()

    scheduler.start()
    run = scheduler.run(Task("inside", stop_from_inside))
    assert scheduler.running
    scheduler.stop()
    assert run.error_type == "SchedulerStateError"
    assert "await scheduler.asyncio_scheduler.stop()" in run.error_message
