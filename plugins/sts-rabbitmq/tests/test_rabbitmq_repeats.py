"""Runs delivered more than once, or with the connection lost around them: each execution is
recorded for what it was (a duplicate, a lost attempt, a completed outcome), no run is lost, and
no fire succeeds twice. Regression tests from the review of the broker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from sts.config import Config
from sts.plugin import BackendError, BackendUnavailableError, RunState, SystemClock
from sts.scheduler import AsyncTaskScheduler
from sts.task import Task, current_run
from sts_core.testing import until
from sts_core.testing.contracts import _run
from sts_rabbitmq import codec
from sts_rabbitmq.codec import Envelope

calls: list[str] = []
holder: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _clear() -> None:
    calls.clear()
    holder.clear()




def _note() -> None:
    run = current_run()
    assert run is not None
    calls.append(run.id)


async def noop() -> None:
    _note()


async def slow() -> None:
    _note()
    await asyncio.sleep(3)


async def drop_connection_at_the_end() -> None:
    _note()
    if len(calls) == 1:  # the network goes away after the work is done, before the worker acks
        holder["scheduler"].backend.broker.link._connection.close()


def scheduler(config: Config) -> AsyncTaskScheduler:
    sched = AsyncTaskScheduler(config)
    for name, function in (("noop", noop), ("slow", slow), ("drop", drop_connection_at_the_end)):
        sched.register_function(name, function)
    return sched


async def _settled(sched: AsyncTaskScheduler, name: str) -> bool:
    runs = await sched.runs(name)
    return bool(runs) and any(r.state is RunState.SUCCEEDED for r in runs) and all(
        r.state is not RunState.RUNNING for r in runs)


def test_a_connection_lost_as_a_run_ends_records_every_execution_and_one_success(
    make_config: Callable[..., Config],
) -> None:
    async def main() -> list[Any]:
        sched = scheduler(make_config())
        holder["scheduler"] = sched
        await sched.add_task(Task("once", function="drop", delay=0.01))
        await sched.start()
        try:
            await until(lambda: _settled(sched, "once"), what="a success and no run left running")
            await asyncio.sleep(0.5)
            return await sched.runs("once")
        finally:
            await sched.stop()

    runs = asyncio.run(main())
    states = sorted(r.state.value for r in runs)
    assert states.count("succeeded") == 1, states
    assert len(runs) == len(calls) or (len(calls) == 1 and states == ["succeeded"]), (calls, states)
    assert set(states) <= {"succeeded", "duplicate", "lost"}, states


def test_a_lost_reply_to_start_run_does_not_drop_the_only_copy(make_config: Callable[..., Config]) -> None:
    async def main() -> list[Any]:
        sched = scheduler(make_config())
        real, answered = sched.backend.store.start_run, []

        async def reply_lost_once(run: Any) -> Any:
            result = await real(run)  # the script ran in Redis ...
            answered.append(run.id)
            if len(answered) == 1:  # ... but its reply was lost
                raise BackendUnavailableError("Redis at x is unreachable (Connection reset by peer)")
            return result

        sched.engine.steps.start_once = reply_lost_once
        await sched.add_task(Task("once", function="noop", delay=0.01))
        await sched.start()
        try:
            await until(lambda: _settled(sched, "once"), what="the run to succeed")
            return await sched.runs("once")
        finally:
            await sched.stop()

    runs = asyncio.run(main())
    assert len(calls) == 1
    assert [r.state for r in runs] == [RunState.SUCCEEDED]


@pytest.mark.parametrize("second_worker", [False, True], ids=["same-worker", "second-worker"])
def test_a_copy_delivered_while_the_original_runs_is_recorded_as_a_duplicate(
    make_config: Callable[..., Config], second_worker: bool,
) -> None:
    async def main() -> list[Any]:
        config = make_config(rabbitmq={"lease_time": "2s"}, executor={"concurrency": 2})
        sched, other = scheduler(config), scheduler(config)
        await sched.add_task(Task("long", function="slow", delay=0.01))
        await sched.start()
        try:
            await until(lambda: calls, what="the run to start")
            (original,) = await sched.runs("long")
            copy = attrs.evolve(original, state=RunState.SCHEDULED, started_at=None, ended_at=None, worker=None)
            await sched.backend.broker.enqueue(copy)  # as a publish repeated after a lost confirm would
            if second_worker:
                await other.start(scheduler=False)
            await until(lambda: _settled(sched, "long"), what="the run to succeed")
            await asyncio.sleep(2.5)  # past a lease: nothing is redelivered
            return await sched.runs("long")
        finally:
            await sched.stop()
            if second_worker:
                await other.stop()

    runs = asyncio.run(main())
    assert len(calls) == 1, calls
    assert sorted(r.state.value for r in runs) == ["duplicate", "succeeded"]


def test_a_scheduler_restarted_on_a_new_event_loop_keeps_consuming(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture,
) -> None:
    sched = scheduler(make_config())

    async def first() -> None:
        await sched.add_task(Task("tick", function="noop", every=0.2))
        await sched.start()
        await until(lambda: calls, what="the first tick")
        await sched.stop()
        await sched.close()

    async def second() -> None:
        seen = len(calls)
        await sched.start()
        try:
            await until(lambda: len(calls) >= seen + 3, timeout=5, what="ticks on the new loop")
        finally:
            await sched.stop()
            await sched.close()

    asyncio.run(first())
    with caplog.at_level(logging.WARNING):
        asyncio.run(second())
    assert not [r for r in caplog.records if "loop failed" in r.getMessage()], caplog.text


def test_a_message_that_cannot_be_moved_goes_back_to_the_queue_and_strands_nothing(make_broker: Any) -> None:
    clock = SystemClock()
    broker = make_broker(clock)

    async def main() -> None:
        await broker.open()
        try:
            ok, later = _run("ok", clock.now()), _run("later", clock.now())
            await broker.enqueue(ok)
            not_before = codec.epoch_ms(clock.now()) + 3_600_000  # beyond the ladder: goes round again
            await broker.link.publish("", broker.names.runs, codec.encode_run(later),
                                      codec.properties(later, Envelope(not_before_ms=not_before)))
            real = broker._publish_run

            async def refused(*args: Any, **kwargs: Any) -> None:
                raise BackendError("nack")

            broker._publish_run = refused
            taken = await broker.consume_many(5, 1.0)
            assert [d.run.task_name for d in taken] == ["ok"]  # handed out despite the failure
            broker._publish_run = real
            assert await broker.ack(taken[0]) is True
            await asyncio.sleep(0.2)
            # "later" went back to the queue, and now goes round the ladder as it should.
            assert await broker.consume_many(5, 0.5) == []
            counts = await broker.queue_counts()
            assert (counts["ready"], counts["leased"], counts["delayed"]) == (0, 0, 1), counts
        finally:
            await broker.close()

    asyncio.run(main())


def test_a_delivery_whose_count_skipped_starts_the_run_once_and_its_copy_is_a_duplicate(
    make_config: Callable[..., Config],
) -> None:
    async def main() -> tuple[list[Any], str]:
        sched = scheduler(make_config())
        await sched.open()
        await sched.add_task(Task("once", function="noop", cron="0 0 1 1 *"))
        (task,) = await sched.list_tasks()
        broker = sched.backend.broker
        run = _run("once", sched.clock.now(), task_version=task.version)
        # Delivery 2 with no earlier record (the first never reached a worker), then a copy.
        await broker.link.publish("", broker.names.runs, codec.encode_run(run),
                                  codec.properties(run, Envelope(deliveries=1)))
        await sched.start()
        try:
            await until(lambda: calls, what="the run")
            await broker.enqueue(run)
            await until(lambda: _has(sched, "once", RunState.DUPLICATE), what="the copy's duplicate record")
            return await sched.runs("once"), run.id
        finally:
            await sched.stop()

    runs, run_id = asyncio.run(main())
    assert calls == [run_id]  # started once, as the run itself (not as <id>.d2)
    assert sorted(r.state.value for r in runs) == ["duplicate", "succeeded"]


async def _has(sched: AsyncTaskScheduler, name: str, state: RunState) -> bool:
    return any(run.state is state for run in await sched.runs(name))
