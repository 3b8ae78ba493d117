"""The blocking ``TaskScheduler`` in-process: its loop thread, restarts, and stop during a run."""

from __future__ import annotations

import asyncio
import threading
import time

import attrs

from sts_core.blocking import TaskScheduler
from sts_core.config import Config
from sts_core.run import RunState
from sts_core.task import Task


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


# -- pause, resume, fire now, one run ----------------------------------------------------------


def test_pause_keeps_the_definition_with_enabled_false_and_no_next_fire_and_resume_brings_it_back():
    from datetime import timedelta

    from sts_core.testing import FakeClock

    clock = FakeClock()
    with TaskScheduler(config=_config(), clock=clock) as scheduler:
        added = scheduler.add_task(Task("hourly", function="json:dumps", args=[1], every="1h", retries=2))
        assert scheduler.next_fire_time("hourly") == clock.now() + timedelta(hours=1)

        paused = scheduler.pause_task("hourly")
        assert (paused.enabled, paused.version) == (False, added.version + 1)
        assert attrs.evolve(paused, enabled=True, version=added.version) == added
        assert scheduler.next_fire_time("hourly") is None
        assert scheduler.pause_task("hourly").version == paused.version  # already paused: no new version

        clock.advance(600)
        resumed = scheduler.resume_task("hourly")
        assert (resumed.enabled, resumed.version) == (True, paused.version + 1)
        assert scheduler.next_fire_time("hourly") == clock.now() + timedelta(hours=1)


def test_pause_and_resume_of_an_unknown_task_raise_task_not_found():
    from sts.errors import TaskNotFoundError

    with TaskScheduler(config=_config()) as scheduler:
        for method in (scheduler.pause_task, scheduler.resume_task):
            try:
                method("ghost")
            except TaskNotFoundError as exc:
                assert "ghost" in str(exc)
            else:
                raise AssertionError(f"{method.__name__} accepted an unknown task")


def test_fire_now_queues_a_run_that_get_run_reads_back_with_its_outcome():
    with TaskScheduler(config=_config()) as scheduler:
        scheduler.add_task(Task("answer", function="json:dumps", args=[42], every="1h"))
        scheduler.start()
        queued = scheduler.fire_now("answer")
        scheduler.wait_idle(10)
        run = scheduler.get_run(queued.id)
        assert run is not None and run.state is RunState.SUCCEEDED
        assert run.reason == "manual" and run.started_at is not None and run.duration is not None
        assert scheduler.get_run("no-such-run") is None


def test_a_paused_task_stays_paused_when_the_application_adds_it_again_at_start_up():
    with TaskScheduler(config=_config()) as scheduler:
        scheduler.add_task(Task("hourly", function=lambda: None, every="1h"))
        paused = scheduler.pause_task("hourly")
        again = scheduler.add_task(Task("hourly", function=paused.function, every="1h"), replace=True)
        assert (again.version, again.enabled) == (paused.version, False)
        assert scheduler.next_fire_time("hourly") is None
