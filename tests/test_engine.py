"""The engine's behaviour, on the memory backend and a fake clock (no sleeping for time to pass)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from sts_core.errors import TaskExistsError, TaskNotFoundError, TaskValidationError
from sts_core.run import RunState
from sts_core.runcontext import current_run
from sts_core.task import Task


async def advance(clock: Any, seconds: float, steps: int = 1) -> None:
    """Move fake time forward in ``steps`` equal steps, letting the engine react after each."""
    for _ in range(steps):
        clock.advance(seconds / steps)
        await clock.settle()


class Recorder:
    """An async task function that records the fake time of each call."""

    def __init__(self, clock: Any, fail_times: int = 0) -> None:
        self.clock = clock
        self.calls: list[Any] = []
        self.fail_times = fail_times

    async def __call__(self) -> str:
        self.calls.append(self.clock.now())
        if len(self.calls) <= self.fail_times:
            raise ConnectionError(f"failure {len(self.calls)}")
        return "done"


def test_a_task_without_trigger_runs_once_at_start(make_scheduler, clock):
    async def main():
        job = Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("once", job))
            await scheduler.start()
            await clock.settle()
            await advance(clock, 100, steps=10)
            runs = await scheduler.runs("once")
            await scheduler.stop()
        assert len(job.calls) == 1
        assert [r.state for r in runs] == [RunState.SUCCEEDED]
        assert runs[0].result == "done"

    asyncio.run(main())


def test_an_interval_task_fires_every_period_without_drift(make_scheduler, clock):
    async def main():
        job = Recorder(clock)
        start = clock.now()
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("tick", job, every="10s"))
            await scheduler.start()
            await advance(clock, 35, steps=7)
            runs = await scheduler.runs("tick")
            await scheduler.stop()
        expected = [start + timedelta(seconds=s) for s in (10, 20, 30)]
        assert sorted(r.scheduled_for for r in runs) == expected
        assert len(job.calls) == 3

    asyncio.run(main())


def test_a_cron_task_fires_at_matching_times(make_scheduler, clock):
    async def main():
        job = Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("cron", job, cron="*/15 * * * *", timezone="Europe/Berlin"))
            await scheduler.start()
            await advance(clock, 3600, steps=12)
            runs = await scheduler.runs("cron")
            await scheduler.stop()
        assert sorted(r.scheduled_for.minute for r in runs) == [0, 15, 30, 45]

    asyncio.run(main())


def test_failed_attempts_are_retried_with_exponential_backoff_and_a_cap(make_scheduler, clock):
    async def main():
        job = Recorder(clock, fail_times=4)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(
                Task("flaky", job, retries=4, retry_delay="10s", backoff=2, max_retry_delay="25s")
            )
            await scheduler.start()
            await advance(clock, 200, steps=200)
            runs = await scheduler.runs("flaky")
            await scheduler.stop()
        gaps = [(b - a).total_seconds() for a, b in zip(job.calls, job.calls[1:], strict=False)]
        assert gaps == [10, 20, 25, 25]
        by_attempt = sorted(runs, key=lambda r: r.attempt)
        assert [r.state for r in by_attempt] == [RunState.RETRYING] * 4 + [RunState.SUCCEEDED]
        assert by_attempt[0].error_type == "ConnectionError"
        assert by_attempt[0].error_message == "failure 1"
        assert "ConnectionError" in by_attempt[0].traceback
        assert len({r.fire_id for r in runs}) == 1

    asyncio.run(main())


def test_a_run_that_fails_every_attempt_is_recorded_failed(make_scheduler, clock):
    async def main():
        job = Recorder(clock, fail_times=10)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("doomed", job, retries=1, retry_delay="1s"))
            await scheduler.start()
            await advance(clock, 5, steps=5)
            runs = await scheduler.runs("doomed")
            await scheduler.stop()
        assert sorted(r.state.value for r in runs) == ["failed", "retrying"]

    asyncio.run(main())


def test_a_coroutine_is_cancelled_at_its_timeout(make_scheduler, clock):
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("slow", slow, timeout=0.05))
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            runs = await scheduler.runs("slow")
            await scheduler.stop()
        assert cancelled.is_set()
        assert runs[0].state is RunState.TIMED_OUT
        assert runs[0].error_type == "TimeoutError"
        assert "0.05s" in runs[0].error_message

    asyncio.run(main())


def test_a_sync_function_that_times_out_is_recorded_and_its_late_result_discarded(make_scheduler, clock):
    import threading

    release = threading.Event()

    def blocking() -> str:
        release.wait(5)
        return "late"

    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("blocking", blocking, timeout=0.05))
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            release.set()
            await asyncio.sleep(0.05)
            runs = await scheduler.runs("blocking")
            await scheduler.stop()
        assert [r.state for r in runs] == [RunState.TIMED_OUT]
        assert runs[0].result is None

    asyncio.run(main())


def test_a_timeout_is_retried_like_a_failure(make_scheduler, clock):
    async def slow() -> None:
        await asyncio.sleep(30)

    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("slow", slow, timeout=0.02, retries=1, retry_delay=5))
            await scheduler.start()
            await clock.settle()
            await asyncio.sleep(0.1)  # the first attempt times out in real time
            await advance(clock, 5)
            await scheduler.wait_idle()
            runs = await scheduler.runs("slow")
            await scheduler.stop()
        assert sorted(r.state.value for r in runs) == ["retrying", "timed_out"]
        assert all(r.hit_timeout for r in runs)  # the retried attempt too

    asyncio.run(main())


def test_a_timeout_error_raised_by_the_task_itself_is_a_failure_not_a_timeout(make_scheduler, clock):
    async def flaky_socket() -> None:
        raise TimeoutError("the socket read timed out")

    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("read", flaky_socket, timeout=60, retries=1, retry_delay=5))
            await scheduler.start()
            await clock.settle()
            await advance(clock, 5)
            await scheduler.wait_idle()
            runs = await scheduler.runs("read")
            await scheduler.stop()
        assert sorted(r.state.value for r in runs) == ["failed", "retrying"]
        assert not any(r.hit_timeout for r in runs)

    asyncio.run(main())


def test_children_run_only_after_all_parents_succeed(make_scheduler, clock):
    async def main():
        order: list[str] = []

        def step(name: str):
            async def run() -> None:
                order.append(name)

            return run

        async with make_scheduler() as scheduler:
            await scheduler.add_tasks([
                Task("a", step("a"), every="10s"),
                Task("b", step("b"), every="20s"),
                Task("c", step("c"), parent_tasks=["a", "b"]),
                Task("d", step("d"), parent_tasks=["c"]),
            ])
            await scheduler.start()
            await advance(clock, 10)
            assert order == ["a"]
            await advance(clock, 10)
            await clock.settle()
            await scheduler.stop()
        assert order.count("c") == 1 and order.count("d") == 1
        assert order.index("b") < order.index("c") < order.index("d")

    asyncio.run(main())


def test_when_a_parent_fails_for_good_its_descendants_are_skipped(make_scheduler, clock):
    async def main():
        async def boom() -> None:
            raise RuntimeError("no")

        async def never() -> None:
            raise AssertionError("must not run")

        async with make_scheduler() as scheduler:
            await scheduler.add_tasks([
                Task("parent", boom),
                Task("child", never, parent_tasks=["parent"]),
                Task("grandchild", never, parent_tasks=["child"]),
            ])
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            skipped = await scheduler.runs(state="skipped")
            await scheduler.stop()
        assert sorted(r.task_name for r in skipped) == ["child", "grandchild"]
        assert all(r.reason == "upstream failed: parent" for r in skipped)

    asyncio.run(main())


def test_a_fire_while_the_previous_run_is_active_is_skipped_by_max_instances(make_scheduler, clock):
    gate = asyncio.Event()

    async def long() -> None:
        await gate.wait()

    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("long", long, every="10s"))
            await scheduler.start()
            await advance(clock, 10)
            await advance(clock, 10)
            gate.set()
            await clock.settle()
            runs = await scheduler.runs("long")
            await scheduler.stop()
        states = sorted(r.state.value for r in runs)
        assert states == ["skipped", "succeeded"]
        assert "max_instances=1" in next(r.reason for r in runs if r.state is RunState.SKIPPED)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("policy", "expected_runs", "expected_skipped"),
    [("coalesce", 1, 0), ("skip", 0, 1), ("run_all", 10, 0)],
)
def test_fires_missed_while_down_follow_the_misfire_policy(make_scheduler, clock, policy, expected_runs,
                                                          expected_skipped):
    async def main():
        job = Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, every="10s", misfire=policy, misfire_grace_time="1s"))
            clock.advance(105)  # the scheduler is not running: ten fires are missed
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            skipped = await scheduler.runs("t", state="skipped")
            await scheduler.stop()
        assert len(job.calls) == expected_runs
        assert len(skipped) == expected_skipped

    asyncio.run(main())


def test_a_late_fire_within_the_grace_time_runs_normally(make_scheduler, clock):
    async def main():
        job = Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, every="10s", misfire="skip", misfire_grace_time="30s"))
            clock.advance(15)
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            await scheduler.stop()
        assert len(job.calls) == 1

    asyncio.run(main())


def test_a_backward_wall_clock_jump_does_not_stall_interval_tasks(make_scheduler, clock):
    async def main():
        job = Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, every="10s"))
            await scheduler.start()
            await advance(clock, 10)
            assert len(job.calls) == 1
            clock.jump(-3600)
            await advance(clock, 40, steps=4)
            await scheduler.stop()
        assert len(job.calls) >= 3

    asyncio.run(main())


def test_jitter_delays_a_fire_by_at_most_the_jitter(make_scheduler, clock):
    async def main():
        job = Recorder(clock)
        start = clock.now()
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, every="10s", jitter="5s"))
            await scheduler.start()
            await advance(clock, 16, steps=16)
            runs = await scheduler.runs("t")
            await scheduler.stop()
        assert len(job.calls) == 1
        assert 10 <= (job.calls[0] - start).total_seconds() <= 15
        assert runs[0].scheduled_for == start + timedelta(seconds=10)

    asyncio.run(main())


def test_cancel_task_cancels_the_run_in_flight_and_its_schedule(make_scheduler, clock):
    async def long() -> None:
        await asyncio.sleep(30)

    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("long", long, every="10s"))
            await scheduler.start()
            await advance(clock, 10)
            assert await scheduler.cancel_task("long") is True
            await clock.settle()
            await advance(clock, 30, steps=3)
            runs = await scheduler.runs("long")
            assert await scheduler.get_task("long") is None
            await scheduler.stop()
        assert [r.state for r in runs] == [RunState.CANCELLED]

    asyncio.run(main())


def test_remove_task_stops_future_fires(make_scheduler, clock):
    async def main():
        job = Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, every="10s"))
            await scheduler.start()
            await advance(clock, 10)
            await scheduler.remove_task("t")
            await advance(clock, 50, steps=5)
            with pytest.raises(TaskNotFoundError):
                await scheduler.remove_task("t")
            assert await scheduler.delete_task("t") is False
            await scheduler.stop()
        assert len(job.calls) == 1

    asyncio.run(main())


def test_a_parent_cannot_be_removed_while_children_name_it(make_scheduler, clock):
    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_tasks([Task("p", Recorder(clock)), Task("c", Recorder(clock), parent_tasks=["p"])])
            with pytest.raises(TaskValidationError, match="parent of c"):
                await scheduler.remove_task("p")

    asyncio.run(main())


def test_add_task_refuses_an_existing_name_unless_replace_which_makes_a_new_version(make_scheduler, clock):
    async def main():
        async with make_scheduler() as scheduler:
            first = await scheduler.add_task(Task("t", Recorder(clock), every="10s"))
            with pytest.raises(TaskExistsError, match="replace=True"):
                await scheduler.add_task(Task("t", Recorder(clock), every="20s"))
            second = await scheduler.add_task(Task("t", Recorder(clock), every="20s"), replace=True)
            assert (first.version, second.version) == (1, 2)
            assert (await scheduler.get_task("t")).every == 20

    asyncio.run(main())


def test_runs_keep_the_task_version_they_ran(make_scheduler, clock):
    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", Recorder(clock), every="10s"))
            await scheduler.start()
            await advance(clock, 10)
            await scheduler.add_task(Task("t", Recorder(clock), every="10s", retries=1), replace=True)
            await advance(clock, 10)
            runs = await scheduler.runs("t")
            await scheduler.stop()
        assert sorted(r.task_version for r in runs) == [1, 2]

    asyncio.run(main())


def test_an_invalid_task_in_a_batch_stores_none_of_them(make_scheduler, clock):
    async def main():
        async with make_scheduler() as scheduler:
            with pytest.raises(TaskValidationError, match="unknown parent"):
                await scheduler.add_tasks([Task("ok", Recorder(clock)), Task("bad", Recorder(clock),
                                                                               parent_tasks=["nope"])])
            assert await scheduler.list_tasks() == []

    asyncio.run(main())


def test_run_executes_now_and_returns_the_recorded_run(make_scheduler, clock):
    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", Recorder(clock), every="1h"))
            run = await scheduler.run("t")
            assert run.state is RunState.SUCCEEDED and run.reason == "manual"
            adhoc = await scheduler.run(Task("adhoc", lambda: 41 + 1))
            assert adhoc.result == 42
            assert await scheduler.get_task("adhoc") is None
            assert (await scheduler.get_run(adhoc.id)).state is RunState.SUCCEEDED

    asyncio.run(main())


def test_output_printed_by_a_task_is_captured_in_its_run(make_scheduler, clock):
    def chatty() -> None:
        print("hello from the task")

    async def main():
        async with make_scheduler() as scheduler:
            run = await scheduler.run(Task("chatty", chatty))
        assert "hello from the task" in run.output

    asyncio.run(main())


def test_stop_records_runs_still_in_flight_after_the_grace_period_as_interrupted(make_scheduler, clock):
    async def long() -> None:
        await asyncio.sleep(30)

    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("long", long))
            await scheduler.start()
            await clock.settle()
            await scheduler.stop(grace=0.05)
            runs = await scheduler.runs("long")
        assert [r.state for r in runs] == [RunState.INTERRUPTED]

    asyncio.run(main())


def test_runs_can_be_filtered_by_state(make_scheduler, clock):
    async def main():
        async def boom() -> None:
            raise ValueError("x")

        async with make_scheduler() as scheduler:
            await scheduler.run(Task("good", Recorder(clock)))
            await scheduler.run(Task("bad", boom))
            failed = await scheduler.runs(state="failed")
            with pytest.raises(ValueError, match="expected one of"):
                await scheduler.runs(state="exploded")
        assert [r.task_name for r in failed] == ["bad"]

    asyncio.run(main())


def test_a_stopped_scheduler_can_be_started_again(make_scheduler, clock):
    def sync_job() -> str:
        return "ran"

    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.start()
            await scheduler.stop()
            await scheduler.start()
            run = await scheduler.run(Task("again", sync_job))
            await scheduler.stop()
        assert run.state is RunState.SUCCEEDED

    asyncio.run(main())


def test_a_process_executor_task_runs_in_a_child_process(make_scheduler, clock):
    async def main():
        async with make_scheduler() as scheduler:
            run = await scheduler.run(Task("pid", "os:getpid", executor="process"))
        import os

        assert run.state is RunState.SUCCEEDED
        assert isinstance(run.result, int) and run.result != os.getpid()

    asyncio.run(main())


def test_a_shell_task_records_its_output_and_exit_status(make_scheduler, clock):
    async def main():
        async with make_scheduler() as scheduler:
            ok = await scheduler.run(Task("echo", type="shell", command="echo hello; echo oops >&2"))
            bad = await scheduler.run(Task("false", type="shell", command="exit 3"))
        assert ok.state is RunState.SUCCEEDED and "hello" in ok.output and "oops" in ok.output
        assert bad.state is RunState.FAILED and bad.error_type == "CommandFailed"
        assert bad.error_message == "exit status 3"

    asyncio.run(main())


def test_an_at_task_fires_once_at_its_time_and_a_delay_task_once_after_its_delay(make_scheduler, clock):
    async def main():
        at_job, delay_job = Recorder(clock), Recorder(clock)
        start = clock.now()
        async with make_scheduler() as scheduler:
            await scheduler.add_tasks([
                Task("at", at_job, at=(start + timedelta(seconds=30)).isoformat()),
                Task("delay", delay_job, delay="45s"),
            ])
            await scheduler.start()
            await advance(clock, 120, steps=24)
            await scheduler.stop()
        assert at_job.calls == [start + timedelta(seconds=30)]
        assert delay_job.calls == [start + timedelta(seconds=45)]

    asyncio.run(main())


def test_an_interval_task_stops_at_its_end(make_scheduler, clock):
    async def main():
        job = Recorder(clock)
        start = clock.now()
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, every="10s", end=start + timedelta(seconds=25)))
            await scheduler.start()
            await advance(clock, 60, steps=6)
            assert await scheduler.next_fire_time("t") is None
            await scheduler.stop()
        assert len(job.calls) == 2

    asyncio.run(main())


def test_a_disabled_task_is_stored_but_never_fires(make_scheduler, clock):
    async def main():
        job = Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("off", job, every="10s", enabled=False, tags=["x"], description="d"))
            await scheduler.start()
            await advance(clock, 60, steps=6)
            stored = await scheduler.get_task("off")
            await scheduler.stop()
        assert job.calls == []
        assert (stored.enabled, stored.tags, stored.description) == (False, ("x",), "d")

    asyncio.run(main())


def test_args_and_kwargs_are_passed_to_the_function(make_scheduler, clock):
    async def add(a: int, b: int, *, scale: int = 1) -> int:
        return (a + b) * scale

    async def main():
        async with make_scheduler() as scheduler:
            run = await scheduler.run(Task("add", add, args=[1, 2], kwargs={"scale": 10}))
        assert run.result == 30

    asyncio.run(main())


def test_config_defaults_apply_to_tasks_that_do_not_set_their_own(make_scheduler, clock):
    async def main():
        job = Recorder(clock, fail_times=2)
        async with make_scheduler(retries=2, retry_delay="7s") as scheduler:
            await scheduler.add_task(Task("t", job))
            await scheduler.start()
            await advance(clock, 20, steps=20)
            await scheduler.stop()
        gaps = [(b - a).total_seconds() for a, b in zip(job.calls, job.calls[1:], strict=False)]
        assert gaps == [7, 7]

    asyncio.run(main())


def test_run_history_is_bounded_per_task(make_scheduler, clock):
    async def main():
        async with make_scheduler(history={"max_runs_per_task": 3}) as scheduler:
            await scheduler.add_task(Task("t", Recorder(clock), every="1s"))
            await scheduler.start()
            await advance(clock, 10, steps=10)
            runs = await scheduler.runs("t")
            await scheduler.stop()
        assert len(runs) == 3

    asyncio.run(main())


class BrokenTrigger:
    """A trigger whose next_fire raises (a buggy plugin)."""

    def __init__(self, first):
        self.first = first

    def first_fire(self, now):
        return self.first

    def next_fire(self, previous):
        raise RuntimeError("trigger bug")

    def describe(self) -> str:
        return "broken"


def test_a_trigger_that_raises_keeps_its_task_due_records_why_and_the_others_keep_firing(make_scheduler, clock):
    async def main():
        good = Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_tasks([Task("bad", Recorder(clock), every="10s"), Task("good", good, every="10s")])
            plan = scheduler.engine.plans.current("bad")
            first = await scheduler.next_fire_time("bad")
            plan.trigger = BrokenTrigger(first)
            await scheduler.start()
            await advance(clock, 30, steps=3)
            # Not dropped (that lost the task silently): due again UNFIREABLE_RETRY after it failed.
            assert await scheduler.next_fire_time("bad") == first + timedelta(seconds=60)
            failed = await scheduler.runs("bad", state="failed")
            await scheduler.stop()
        assert len(good.calls) == 3
        assert [run.error_message for run in failed] == ["cannot be fired: firing it failed: RuntimeError: trigger bug"]

    asyncio.run(main())


def _fail_once(store: Any, method: str, error: Exception) -> None:
    """Make ``store.<method>`` raise ``error`` on its first call, then behave."""
    real = getattr(store, method)
    failures = [error]

    async def flaky(*args: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(*args)

    setattr(store, method, flaky)


def test_the_scheduler_loop_survives_a_failing_store(make_scheduler, clock):
    async def main():
        job = Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, every="10s"))
            _fail_once(scheduler.backend.store, "due_fires", ConnectionError("backend down"))
            await scheduler.start()
            await advance(clock, 30, steps=30)
            await scheduler.stop()
        assert len(job.calls) == 3

    asyncio.run(main())


def test_a_backend_error_while_firing_leaves_the_fire_due_instead_of_unscheduling_the_task(make_scheduler, clock):
    from sts_core.errors import BackendUnavailableError

    async def main():
        job = Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, every="10s"))
            error = BackendUnavailableError("Redis at redis://x is unreachable (connection refused)")
            store = scheduler.backend.store
            real, failed = store.begin_fire_now, []

            def flaky(*args: Any) -> bool:  # the memory backend's claim_and_enqueue admits fires with it
                if not failed:
                    failed.append(args)
                    raise error
                return real(*args)

            store.begin_fire_now = flaky
            await scheduler.start()
            await advance(clock, 30, steps=30)
            next_fire = await scheduler.next_fire_time("t")
            await scheduler.stop()
        assert failed  # the error was raised while firing
        assert next_fire is not None  # still scheduled
        assert len(job.calls) >= 2

    asyncio.run(main())


def test_a_run_longer_than_its_lease_is_renewed_and_runs_once(make_scheduler, clock):
    gate = asyncio.Event()
    calls = []

    async def long() -> None:
        calls.append(clock.now())
        await gate.wait()

    async def main():
        async with make_scheduler(memory={"lease_time": "3s"}) as scheduler:
            await scheduler.add_task(Task("long", long))
            await scheduler.start()
            await clock.settle()
            await advance(clock, 20, steps=20)
            gate.set()
            await clock.settle()
            runs = await scheduler.runs("long")
            await scheduler.stop()
        assert len(calls) == 1
        assert [r.state for r in runs] == [RunState.SUCCEEDED]

    asyncio.run(main())


def test_queued_retries_of_a_cancelled_task_do_not_run_when_the_name_is_added_again(make_scheduler, clock):
    async def main():
        old, new = Recorder(clock, fail_times=100), Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", old, retries=3, retry_delay="5s"))
            await scheduler.start()
            await clock.settle()
            assert len(old.calls) == 1
            await scheduler.cancel_task("t")
            await scheduler.add_task(Task("t", new, every="2s"))
            await advance(clock, 12, steps=12)
            runs = await scheduler.runs("t")
            await scheduler.stop()
        assert len(old.calls) == 1
        assert len(new.calls) == 6
        assert not [r for r in runs if r.state is RunState.SKIPPED]

    asyncio.run(main())


@pytest.mark.parametrize("jump", [25, 3600], ids=["within the grace time", "beyond it"])
def test_a_forward_clock_jump_does_not_fire_a_burst(make_scheduler, clock, jump):
    async def main():
        job = Recorder(clock)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, every="1s"))
            await scheduler.start()
            await advance(clock, 1)
            clock.jump(jump)
            await advance(clock, 1)
            await scheduler.wait_idle()
            runs = await scheduler.runs("t")
            await scheduler.stop()
        assert len(job.calls) <= 3
        assert len(runs) <= 3

    asyncio.run(main())


def test_runs_still_queued_when_the_scheduler_stops_are_recorded_cancelled(make_scheduler, clock):
    async def main():
        job = Recorder(clock, fail_times=1)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, retries=1, retry_delay="1h"))
            await scheduler.start()
            await clock.settle()
            await scheduler.stop()
            runs = await scheduler.runs("t")
        assert sorted((r.attempt, r.state.value) for r in runs) == [(1, "retrying"), (2, "cancelled")]

    asyncio.run(main())


def test_a_backward_clock_jump_does_not_delay_a_retry(make_scheduler, clock):
    async def main():
        job = Recorder(clock, fail_times=1)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, retries=1, retry_delay="10s"))
            await scheduler.start()
            await clock.settle()
            clock.jump(-3600)
            await advance(clock, 10, steps=10)
            await scheduler.stop()
        assert len(job.calls) == 2

    asyncio.run(main())


def test_after_a_very_long_outage_an_aligned_interval_keeps_its_alignment(make_scheduler, clock):
    async def main():
        job = Recorder(clock)
        start = clock.now() + timedelta(seconds=0.5)
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", job, every="1s", start=start))
            clock.advance(20_000)  # 20,000 fires missed: beyond the catch-up bound
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            following = await scheduler.next_fire_time("t")
            await scheduler.stop()
        assert len(job.calls) == 1
        assert (following - start).total_seconds() % 1 == 0
        assert following > clock.now()

    asyncio.run(main())


def test_loading_a_task_file_again_stores_only_the_changed_tasks_as_new_versions(make_scheduler, clock, tmp_path):
    first = tmp_path / "tasks.yaml"
    first.write_text("tasks:\n  - {name: a, type: shell, command: 'true', every: 10s}\n"
                     "  - {name: b, type: shell, command: 'true', every: 20s}\n")

    async def main():
        async with make_scheduler() as scheduler:
            loaded = await scheduler.load_task_file(first)
            assert [(t.name, t.version) for t in loaded] == [("a", 1), ("b", 1)]
            first.write_text(first.read_text().replace("every: 20s", "every: 30s"))
            again = await scheduler.load_task_file(first)
        assert [(t.name, t.version) for t in again] == [("a", 1), ("b", 2)]

    asyncio.run(main())


def test_fire_now_queues_a_run_for_the_workers_and_respects_max_instances(make_scheduler, clock):
    release = asyncio.Event()
    running: list[str] = []
    overlaps: list[list[str]] = []

    async def busy() -> None:
        run = current_run()
        running.append(run.fire_id)
        overlaps.append(list(running))
        await release.wait()
        running.remove(run.fire_id)

    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("report", busy, every="1h"))
            await scheduler.start()
            fired = await scheduler.fire_now("report", "api")
            await clock.settle()
            queued = await scheduler.fire_now("report", "api")  # max_instances 1: one is running
            skipped = await scheduler.fire_now("report", "api", queue_when_busy=False)
            await advance(clock, 5, steps=5)  # the queued fire looks again each second: still busy
            assert len(overlaps) == 1
            release.set()
            await advance(clock, 2, steps=2)
            await scheduler.wait_idle()
            runs = await scheduler.runs("report")
            with pytest.raises(TaskNotFoundError):
                await scheduler.fire_now("nope")
            await scheduler.stop()
        assert fired.reason == "api" and fired.state is RunState.SCHEDULED
        assert queued.state is RunState.SCHEDULED and queued.waits_for_instance
        assert "queued behind a run still active: max_instances=1" in queued.reason
        assert skipped.state is RunState.SKIPPED and "max_instances" in skipped.reason
        succeeded = {r.fire_id for r in runs if r.state is RunState.SUCCEEDED}
        assert succeeded == {fired.fire_id, queued.fire_id}, "the queued manual fire ran once the first ended"
        assert queued.id in {r.id for r in runs if r.state is RunState.SUCCEEDED}, "recorded under the id returned"
        assert all(len(seen) == 1 for seen in overlaps), f"runs overlapped: {overlaps}"

    asyncio.run(main())


def test_an_older_version_of_a_task_can_be_read(make_scheduler):
    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", "sts_core.testing:noop", every="1h"))
            await scheduler.add_task(Task("t", "sts_core.testing:noop", every="2h"), replace=True)
            first, current = await scheduler.get_task("t", 1), await scheduler.get_task("t")
        assert (first.every, first.version) == (3600.0, 1)
        assert (current.every, current.version) == (7200.0, 2)

    asyncio.run(main())


def test_a_trigger_whose_first_fire_cannot_be_computed_stores_nothing(make_scheduler):
    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("t", "sts_core.testing:noop", every="1h"))
            with pytest.raises(TaskValidationError, match=r"t\.cron: no first fire time can be computed"):
                await scheduler.add_task(
                    Task("t", "sts_core.testing:fake_clock", cron="* * * * *", start="9999-12-31T23:59:30+00:00"),
                    replace=True,
                )
            kept = await scheduler.get_task("t")
        assert (kept.version, kept.every, kept.function) == (1, 3600.0, "sts_core.testing:noop")

    asyncio.run(main())


@pytest.mark.parametrize("zone", ["Europe", "America", "x" * 300])
def test_a_time_zone_that_names_a_folder_or_is_too_long_is_a_clear_error(zone):
    with pytest.raises(TaskValidationError, match="unknown time zone"):
        Task("t", "sts_core.testing:noop", every="1h", timezone=zone)


def test_a_freed_slot_takes_the_next_run_while_the_last_outcome_is_still_being_recorded(make_scheduler, clock):
    order: list[tuple[str, str]] = []

    async def job(label: str) -> None:
        order.append(("ran", label))

    async def main():
        async with make_scheduler(executor={"concurrency": 1}) as scheduler:
            recorded = asyncio.Event()
            real = scheduler.engine.steps.finish_run

            async def slow(run: Any, *args: Any) -> bool:
                order.append(("recording", run.task_name))
                if run.task_name == "a":
                    await recorded.wait()
                return await real(run, *args)

            scheduler.engine.steps.finish_run = slow
            await scheduler.add_tasks([Task("a", job, kwargs={"label": "a"}), Task("b", job, kwargs={"label": "b"})])
            await scheduler.start()
            await clock.settle()
            assert order[:3] == [("ran", "a"), ("recording", "a"), ("ran", "b")]  # one slot, and it moved on
            recorded.set()
            await scheduler.wait_idle()
            runs = await scheduler.runs()
            await scheduler.stop()
        assert sorted((r.task_name, r.state) for r in runs) == [("a", RunState.SUCCEEDED), ("b", RunState.SUCCEEDED)]

    asyncio.run(main())


def test_adding_tasks_reads_only_the_stored_tasks_the_batch_touches(make_scheduler, clock):
    async def main():
        async with make_scheduler() as scheduler:
            await scheduler.add_tasks([Task(f"t{i}", "sts_core.testing:noop", every=60) for i in range(50)])
            await scheduler.add_tasks([Task("p", "sts_core.testing:noop", parent_tasks=("t1",))])
            store = scheduler.backend.store

            async def no_full_listing() -> Any:
                raise AssertionError("add_tasks read every stored task")

            store.list_tasks = no_full_listing
            await scheduler.add_tasks([Task("c", "sts_core.testing:noop", parent_tasks=("p",))])
            with pytest.raises(TaskValidationError, match="dependency cycle"):  # t1 -> c -> p -> t1
                await scheduler.add_tasks([Task("t1", "sts_core.testing:noop", parent_tasks=("c",))], replace=True)
            assert await store.get_tasks(["c", "missing", "t3"]) == {
                "c": await store.get_task("c"), "t3": await store.get_task("t3")}

    asyncio.run(main())


def test_adding_an_unchanged_task_again_keeps_its_version_and_next_fire(make_scheduler, clock):
    async def main():
        hourly = Recorder(clock)
        async with make_scheduler() as scheduler:
            first = await scheduler.add_task(Task("hourly", hourly, every="1h"))
            due = await scheduler.next_fire_time("hourly")
            clock.advance(600)  # an application restarts and registers its tasks again
            again = await scheduler.add_task(Task("hourly", hourly, every="1h"), replace=True)
            both = await scheduler.add_tasks([Task("hourly", hourly, every="1h"), Task("new", hourly, every="1h")],
                                             replace=True)
            assert (again.version, await scheduler.next_fire_time("hourly")) == (first.version, due)
            assert [task.version for task in both] == [1, 1]
            changed = await scheduler.add_task(Task("hourly", hourly, every="2h"), replace=True)
            assert changed.version == 2
            assert await scheduler.next_fire_time("hourly") == clock.now() + timedelta(hours=2)

    asyncio.run(main())


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


@pytest.mark.parametrize(
    ("returned", "recorded"),
    [
        ({"rows": 3, "ids": (1, 2)}, {"rows": 3, "ids": [1, 2]}),  # JSON data: kept as a value
        ("text", "text"),
        (2.5, 2.5),
        (Opaque(), "<opaque>"),  # not JSON data: its repr
        ({1: "a"}, "{1: 'a'}"),  # JSON would change its keys: its repr
        (float("nan"), "nan"),
        ("x" * 70_000, "'" + "x" * 499 + "…"),  # too large to keep: the start of its repr
    ],
)
def test_a_run_records_what_its_function_returned_as_a_value_when_it_is_json_data(make_scheduler, returned, recorded):
    async def main():
        async with make_scheduler() as scheduler:
            return await scheduler.run(Task("value", lambda: returned))

    run = asyncio.run(main())
    assert run.result == recorded


def test_a_recorded_json_result_cannot_be_changed_through_a_run_read_back(make_scheduler) -> None:
    async def main() -> list:
        async with make_scheduler() as sched:
            run = await sched.run(Task("listing", lambda: ["a", "b"]))
            first = await sched.get_run(run.id)
            first.result.append("changed by a reader")  # the memory store keeps its own copy
            return (await sched.get_run(run.id)).result

    assert asyncio.run(main()) == ["a", "b"]

