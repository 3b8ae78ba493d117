"""The engine with tasks in Redis and runs delivered through RabbitMQ, in one process: runs,
retries through the delay ladder, separate scheduler and worker roles, a run handed back at a
graceful stop, poison runs, and the errors a user sees for a bad configuration or server."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from sts.config import Config
from sts.plugin import BackendUnavailableError, ConfigError, PluginManager, RunState
from sts.scheduler import AsyncTaskScheduler
from sts.task import Task, current_run
from sts_core.testing import until

calls: list[tuple[str, int, float]] = []


def record() -> None:
    run = current_run()
    assert run is not None
    calls.append((run.task_name, run.attempt, time.monotonic()))


def fail() -> None:
    record()
    raise RuntimeError("always fails")


async def slow(seconds: float) -> None:
    record()
    await asyncio.sleep(seconds)


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    calls.clear()



def scheduler(config: Config) -> AsyncTaskScheduler:
    sched = AsyncTaskScheduler(config)
    for name, function in (("record", record), ("fail", fail), ("slow", slow)):
        sched.register_function(name, function)
    return sched



def test_runs_fire_through_rabbitmq_and_are_recorded_in_redis(make_config: Callable[..., Config]) -> None:
    async def main() -> None:
        sched = scheduler(make_config())
        await sched.add_task(Task("tick", function="record", every=0.2))
        await sched.start()
        try:
            await until(lambda: len(calls) >= 3, what="three ticks")
        finally:
            await sched.stop()
        runs = await sched.runs("tick")
        assert {run.state for run in runs} <= {RunState.SUCCEEDED, RunState.INTERRUPTED, RunState.CANCELLED}
        assert sum(run.state is RunState.SUCCEEDED for run in runs) >= 3
        assert sched.backend.broker.names.runs.endswith(".runs")

    asyncio.run(main())


def test_a_manual_fire_beyond_max_instances_waits_in_the_ladder_and_runs_after_the_active_one(
    make_config: Callable[..., Config],
) -> None:
    async def main() -> None:
        sched = scheduler(make_config())
        await sched.add_task(Task("exclusive", function="slow", kwargs={"seconds": 0.3}, every="1h"))
        await sched.start()
        try:
            first = await sched.fire_now("exclusive")
            await until(lambda: len(calls) == 1, what="the first run to start")
            queued = await sched.fire_now("exclusive")
            assert queued.waits_for_instance

            async def both_ran() -> bool:
                done = await sched.runs("exclusive", state="succeeded")
                return {run.fire_id for run in done} == {first.fire_id, queued.fire_id}

            await until(both_ran, timeout=15, what="the queued manual fire to run")
        finally:
            await sched.stop()
        assert calls[1][2] - calls[0][2] >= 0.3, "the queued fire started before the active run ended"

    asyncio.run(main())


def test_retries_wait_their_delay_in_the_ladder_and_the_run_fails_for_good_after_the_last(
    make_config: Callable[..., Config],
) -> None:
    async def main() -> None:
        sched = scheduler(make_config())
        await sched.add_task(Task("flaky", function="fail", delay=0.01, retries=2, retry_delay=0.3))
        await sched.start()
        try:
            await until(lambda: len(calls) >= 3, what="three attempts")
            await until(lambda: _final(sched, "flaky"), what="the final failure")
        finally:
            await sched.stop()
        attempts = [attempt for _, attempt, _ in calls]
        gaps = [b - a for (_, _, a), (_, _, b) in itertools.pairwise(calls)]
        assert attempts == [1, 2, 3]
        assert all(0.3 <= gap < 0.3 + 0.5 for gap in gaps), gaps
        states = [run.state for run in await sched.runs("flaky")]
        assert states.count(RunState.RETRYING) == 2 and states.count(RunState.FAILED) == 1

    asyncio.run(main())


async def _final(sched: AsyncTaskScheduler, name: str) -> bool:
    return any(run.state is RunState.FAILED for run in await sched.runs(name))


def test_a_scheduler_process_fires_and_a_worker_process_runs(make_config: Callable[..., Config]) -> None:
    async def main() -> None:
        fires_only, runs_only = scheduler(make_config()), scheduler(make_config())
        await fires_only.start(worker=False)
        await runs_only.start(scheduler=False)
        try:
            await fires_only.add_task(Task("remote", function="record", every=0.2))
            await until(lambda: len(calls) >= 2, what="runs executed by the worker")
        finally:
            await fires_only.stop()
            await runs_only.stop()

    asyncio.run(main())


def test_a_run_interrupted_by_a_graceful_stop_is_handed_back_and_finished_by_another_worker(
    make_config: Callable[..., Config],
) -> None:
    async def main() -> None:
        config = make_config(scheduler={"shutdown_grace": "0.2s"})
        fires_only, first = scheduler(config), scheduler(config)
        await fires_only.start(worker=False)
        await first.start(scheduler=False)
        second = scheduler(config)
        try:
            await fires_only.add_task(Task("long", function="slow", kwargs={"seconds": 1.0}, delay=0.01))
            await until(lambda: len(calls) == 1, what="the run to start")
            await first.stop()  # grace 0.2 s: the run is interrupted and handed back
            await second.start(scheduler=False)
            await until(lambda: _succeeded(second, "long"), what="the handed-back run to finish")
        finally:
            await fires_only.stop()
            await second.stop()
        runs = sorted(await second.runs("long"), key=lambda run: run.attempt)
        assert [run.state for run in runs] == [RunState.INTERRUPTED, RunState.SUCCEEDED]
        assert "handed it back" in (runs[1].reason or "")

    asyncio.run(main())


async def _succeeded(sched: AsyncTaskScheduler, name: str) -> bool:
    return any(run.state is RunState.SUCCEEDED for run in await sched.runs(name))


def test_a_broker_over_the_memory_store_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError) as caught:
        AsyncTaskScheduler(Config({"broker": "rabbitmq"}))
    assert "needs a store that outlives the process, such as redis" in str(caught.value)
    assert "broker" in str(caught.value)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"url": "http://localhost"}, "rabbitmq.url: expected a URL starting amqp:// or amqps:// (TLS)"),
        ({"url": "amqp://u:p/w@host:5672/"}, "is not a number from 1 to 65535"),
        ({"prefech": 8}, "rabbitmq.prefech: unknown rabbitmq option (did you mean 'prefetch'?)"),
        ({"prefetch": 0}, "rabbitmq.prefetch: expected a whole number from 1 to 65535"),
        ({"lease_time": "0s"}, "rabbitmq.lease_time: expected a duration greater than zero"),
        ({"prefix": "a b"}, "rabbitmq.prefix: expected a name prefix"),
    ],
)
def test_a_bad_rabbitmq_section_names_the_key_and_what_was_expected(section: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config({"scheduler_backend": "redis", "broker": "rabbitmq", "rabbitmq": section}).validate_sections(
            PluginManager()
        )
    assert expected in str(caught.value)
    assert "u:p" not in str(caught.value)


def test_an_unreachable_server_is_reported_with_its_address_and_never_the_password(redis_url: str) -> None:
    config = Config({
        "scheduler_backend": "redis", "broker": "rabbitmq", "redis": {"url": redis_url},
        "rabbitmq": {"url": "amqp://app:s3cret@127.0.0.1:1/prod", "connect_timeout": "1s"},
    })

    async def main() -> None:
        sched = AsyncTaskScheduler(config)
        with pytest.raises(BackendUnavailableError) as caught:
            await sched.open()
        message = str(caught.value)
        assert "amqp://127.0.0.1:1 (vhost prod)" in message and "s3cret" not in message

    asyncio.run(main())


def test_a_second_copy_of_a_run_is_recorded_as_a_duplicate_and_not_run_again(
    make_config: Callable[..., Config],
) -> None:
    async def main() -> None:
        sched = scheduler(make_config())
        await sched.add_task(Task("once", function="record", delay=0.01))
        await sched.start()
        try:
            await until(lambda: _succeeded(sched, "once"), what="the run")
            (original,) = await sched.runs("once")
            copy = attrs.evolve(original, state=RunState.SCHEDULED, started_at=None, ended_at=None, worker=None)
            await sched.backend.broker.enqueue(copy)  # as a publish repeated after a lost confirm would
            await until(lambda: _has_state(sched, "once", RunState.DUPLICATE), what="the duplicate record")
        finally:
            await sched.stop()
        runs = {run.id: run for run in await sched.runs("once")}
        assert len(calls) == 1
        assert runs[original.id].state is RunState.SUCCEEDED
        (duplicate,) = [run for run in runs.values() if run.state is RunState.DUPLICATE]
        assert duplicate.id.startswith(f"{original.id}.copy")
        assert f"a second copy of run {original.id} was delivered (the run is succeeded)" in (duplicate.reason or "")
        assert await sched.backend.broker.depth() == 0

    asyncio.run(main())


async def _has_state(sched: AsyncTaskScheduler, name: str, state: RunState) -> bool:
    return any(run.state is state for run in await sched.runs(name))


def test_a_run_a_dead_scheduler_claimed_but_never_queued_is_queued_by_the_next_sweep(
    make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sts_core.testing.contracts import _run

    # The kernel's outbox timings, shortened (no config key sets them).
    monkeypatch.setattr("sts_core.steps.OUTBOX_GRACE", 0.3)
    monkeypatch.setattr("sts_core.firing.OUTBOX_SWEEP_INTERVAL", 0.2)

    async def main() -> None:
        sched = scheduler(make_config())
        await sched.open()
        await sched.add_task(Task("orphan", function="record", cron="0 0 1 1 *"))
        (task,) = await sched.list_tasks()
        store = sched.backend.store
        # What a scheduler killed between claiming a fire and publishing its run leaves behind:
        run = _run("orphan", sched.clock.now(), task_version=task.version)
        assert await store.stage_fire(None, run, 1, None) == "staged"
        staged = time.monotonic()
        await sched.start()
        try:
            await until(lambda: calls, timeout=5, what="the stranded run to be queued and run")
            waited = time.monotonic() - staged
            await until(lambda: _succeeded(sched, "orphan"), what="its record")
            await asyncio.sleep(0.5)  # further sweeps find nothing left to queue
        finally:
            await sched.stop()
        assert len(calls) == 1
        assert 0.3 <= waited < 3.0
        assert [r.id for r in await sched.runs("orphan")] == [run.id]
        assert await store.take_stranded(sched.clock.now(), 10) == []

    asyncio.run(main())


def test_runs_are_staged_while_the_fire_is_claimed_and_unstaged_once_queued(
    make_config: Callable[..., Config],
) -> None:
    async def main() -> None:
        sched = scheduler(make_config())
        await sched.add_task(Task("tick", function="record", every=0.1))
        await sched.start()
        store = sched.backend.store
        try:
            await until(lambda: len(calls) >= 5, what="five ticks")
            await sched.remove_task("tick")
            await asyncio.sleep(0.2)
            assert await store.connection.client.hlen(f"{store.prefix}:outbox") == 0
        finally:
            await sched.stop()

    asyncio.run(main())
