"""What the engine does with a run delivered again (its worker was lost), a stale lease, and a run that
cannot be delivered: on the memory backend and a fake clock, driving the worker step by step.

The worker loop is not started here: each test takes deliveries from the broker itself and
hands them to the engine, as the loop would, so that a lost worker can be played exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sts_core import events as ev
from sts_core.plugins import PluginManager
from sts_core.run import RunState
from sts_core.scheduler import AsyncTaskScheduler
from sts_core.task import Task
from sts_core.testing import EventRecorder

calls: list[str] = []


def job(label: str = "job") -> str:
    calls.append(label)
    return label


def failing() -> None:
    calls.append("failing")
    raise RuntimeError("boom")


def _listened(make_scheduler: Any, events: EventRecorder, **config: Any) -> AsyncTaskScheduler:
    """A scheduler whose events reach ``events``."""
    return make_scheduler(plugins=PluginManager(plugins=[("events", events)]), **config)


async def _seen(events: EventRecorder, kind: type) -> list[Any]:
    """The events of ``kind`` once one has reached the listener (events arrive on their own thread)."""
    for _ in range(200):
        found = [e for e in events.seen if isinstance(e, kind)]
        if found:
            return found
        await asyncio.sleep(0.01)
    return []


async def _prepared(scheduler: AsyncTaskScheduler, *tasks: Task) -> Any:
    calls.clear()
    await scheduler.add_tasks(list(tasks))
    return scheduler.engine, scheduler.backend.broker


async def _fire_first(engine: Any, name: str) -> Any:
    """Dispatch one run of ``name`` now, as the scheduler loop would."""
    plan = engine.plans.current(name)
    return await engine.dispatch(plan, engine.clock.now(), "schedule")


def test_a_redelivered_run_marks_the_lost_attempt_and_runs_as_a_new_attempt(make_scheduler, clock) -> None:
    events = EventRecorder()

    async def main() -> None:
        async with _listened(make_scheduler, events) as scheduler:
            engine, broker = await _prepared(scheduler, Task("t", job, parent_tasks=[], every=3600))
            run = await _fire_first(engine, "t")
            first = await broker.consume(0)
            # the first worker recorded the start, then died: nothing else happened
            first.run.state, first.run.started_at, first.run.worker = RunState.RUNNING, clock.now(), "w1:dead"
            await scheduler.backend.store.record_run(first.run)
            clock.advance(60)  # memory lease_time: the lease ends
            second = await broker.consume(0)
            assert second.delivery_count == 2
            await engine.worker_loop.execute_delivered(second)
            lost = await scheduler.get_run(run.id)
            redo = await scheduler.get_run(f"{run.id}.d2")
            announced = await _seen(events, ev.RunLost)
        assert lost.state is RunState.LOST and "w1:dead" in lost.error_message
        assert [e.run.id for e in announced] == [run.id] and announced[0].run.state is RunState.LOST
        assert redo.state is RunState.SUCCEEDED and redo.attempt == 2 and "redelivered" in redo.reason
        assert redo.fire_id == run.fire_id
        assert calls == ["job"]

    asyncio.run(main())


def test_a_run_delivered_more_often_than_max_redeliveries_is_dead_lettered_as_poison(make_scheduler, clock) -> None:
    events = EventRecorder()

    async def main() -> None:
        async with _listened(make_scheduler, events, executor={"max_redeliveries": 1}) as scheduler:
            engine, broker = await _prepared(scheduler, Task("t", job, every=3600))
            run = await _fire_first(engine, "t")
            # three workers record the start and die: the first beside other runs, then two alone
            for number in (1, 2, 3):
                delivery = await broker.consume(0)
                delivery.run.id = run.id if number == 1 else f"{run.id}.d{number}"
                delivery.run.state, delivery.run.isolated = RunState.RUNNING, number > 1
                await scheduler.backend.store.record_run(delivery.run)
                clock.advance(60)
            fourth = await broker.consume(0)
            assert fourth.delivery_count == 4
            await engine.worker_loop.execute_delivered(fourth)
            for _ in range(100):  # events reach listeners on their own thread
                if any(isinstance(e, ev.RunFailed) for e in events.seen):
                    break
                await asyncio.sleep(0.01)
            poison = await scheduler.get_run(f"{run.id}.d4")
            dead = await broker.dead_letters()
            depth = await broker.depth()
            assert await scheduler.backend.store.begin_fire("t", "next", 1)  # the fire no longer counts
        assert poison.state is RunState.POISON and "delivered 4 times" in poison.error_message
        assert "lost 2 times while it ran alone" in poison.error_message
        assert [d["id"] for d in dead] == [run.id] and "max_redeliveries=1" in dead[0]["reason"]
        assert depth == 0 and calls == []
        failed = [e for e in events.seen if isinstance(e, ev.RunFailed)]
        assert [e.run.state for e in failed] == [RunState.POISON]

    asyncio.run(main())


def test_a_run_whose_outcome_was_recorded_before_its_worker_died_is_completed_not_run_again(
    make_scheduler, clock
) -> None:
    events = EventRecorder()

    async def main() -> None:
        async with _listened(make_scheduler, events) as scheduler:
            engine, broker = await _prepared(
                scheduler, Task("parent", job, every=3600), Task("child", job, kwargs={"label": "child"},
                                                                   parent_tasks=["parent"]),
            )
            run = await _fire_first(engine, "parent")
            first = await broker.consume(0)
            first.run.state, first.run.ended_at = RunState.SUCCEEDED, clock.now()
            await scheduler.backend.store.record_run(first.run)  # recorded, then died before the ack
            clock.advance(60)
            second = await broker.consume(0)
            await engine.worker_loop.execute_delivered(second)
            child = await broker.consume(0)
            recorded = await scheduler.get_run(run.id)
            assert await scheduler.get_run(f"{run.id}.d2") is None
            announced = await _seen(events, ev.RunSucceeded)
        assert calls == []  # not run again
        assert [(e.run.id, e.repeated) for e in announced] == [(run.id, True)]  # the lost worker may have said so
        assert recorded.state is RunState.SUCCEEDED
        assert child is not None and child.run.task_name == "child"  # its dependent still starts

    asyncio.run(main())


def test_a_redelivery_whose_count_skipped_a_number_still_finds_the_recorded_outcome(make_scheduler, clock) -> None:
    # RabbitMQ may count a delivery nobody ran (an ack in flight when the server died): the run
    # recorded at delivery 1 comes back as delivery 3, and must be completed, not run again.
    async def main() -> None:
        async with make_scheduler() as scheduler:
            engine, broker = await _prepared(scheduler, Task("t", job, every=3600))
            run = await _fire_first(engine, "t")
            first = await broker.consume(0)
            first.run.state, first.run.ended_at = RunState.SUCCEEDED, clock.now()
            await scheduler.backend.store.record_run(first.run)
            clock.advance(60)
            await broker.consume(0)  # delivery 2: never reached a worker
            clock.advance(60)
            third = await broker.consume(0)
            assert third.delivery_count == 3
            await engine.worker_loop.execute_delivered(third)
            records = await scheduler.runs("t")
        assert calls == []
        assert [(r.id, r.state) for r in records] == [(run.id, RunState.SUCCEEDED)]

    asyncio.run(main())


def test_a_run_recorded_retrying_before_its_worker_died_gets_its_retry_queued(make_scheduler, clock) -> None:
    async def main() -> None:
        from datetime import timedelta

        async with make_scheduler() as scheduler:
            engine, broker = await _prepared(scheduler, Task("t", failing, every=3600, retries=1))
            run = await _fire_first(engine, "t")
            first = await broker.consume(0)
            first.run.state, first.run.retry_at = RunState.RETRYING, clock.now() + timedelta(seconds=5)
            await scheduler.backend.store.record_run(first.run)
            clock.advance(60)
            second = await broker.consume(0)
            await engine.worker_loop.execute_delivered(second)
            retry = await broker.consume(0)
        assert calls == []
        assert retry is not None and retry.run.attempt == 2 and retry.run.fire_id == run.fire_id

    asyncio.run(main())


def test_a_worker_that_finishes_after_losing_its_lease_records_a_duplicate_and_nothing_follows(
    make_scheduler, clock
) -> None:
    events = EventRecorder()

    async def main() -> None:
        async with _listened(make_scheduler, events) as scheduler:
            engine, broker = await _prepared(
                scheduler, Task("t", failing, every=3600, retries=2),
                Task("child", job, parent_tasks=["t"]),
            )
            run = await _fire_first(engine, "t")
            stale = await broker.consume(0)
            clock.advance(60)
            current = await broker.consume(0)  # another worker has it now
            await engine.worker_loop.execute_delivered(stale)  # the stale worker runs it and fails: no retry may follow
            record = await scheduler.get_run(run.id)
            assert await broker.depth() == 1  # only the current delivery
            assert await broker.ack(current) is True
            announced = await _seen(events, ev.RunDuplicate)
        assert record.state is RunState.DUPLICATE and "lease was lost" in record.reason
        assert [e.run.state for e in announced] == [RunState.DUPLICATE]
        assert calls == ["failing"]

    asyncio.run(main())


def test_a_queued_run_of_a_task_that_never_existed_is_dead_lettered(make_scheduler, clock) -> None:
    async def main() -> None:
        from sts_core.run import Run, fire_id, new_run_id

        async with make_scheduler() as scheduler:
            engine, broker = await _prepared(scheduler, Task("t", job, every=3600))
            now = clock.now()
            ghost = Run(id=new_run_id(), task_name="ghost", task_version=1, scheduled_for=now,
                        fire_id=fire_id("ghost", now))
            await broker.enqueue(ghost)
            await engine.worker_loop.execute_delivered(await broker.consume(0))
            record = await scheduler.get_run(ghost.id)
            dead = await broker.dead_letters()
        assert record.state is RunState.POISON and "unknown task 'ghost'" in record.error_message
        assert dead[0]["id"] == ghost.id

    asyncio.run(main())


def test_runs_handed_back_at_graceful_stops_are_not_poisoned_and_say_so(make_scheduler, clock) -> None:
    async def main() -> None:
        async with make_scheduler(executor={"max_redeliveries": 0}) as scheduler:
            engine, broker = await _prepared(scheduler, Task("t", job, every=3600))
            run = await _fire_first(engine, "t")
            for delivery_number in (1, 2):  # two workers stop gracefully while it runs
                delivery = await broker.consume(0)
                attempt_id = run.id if delivery_number == 1 else f"{run.id}.d{delivery_number}"
                delivery.run.id = attempt_id
                delivery.run.state = RunState.INTERRUPTED
                await scheduler.backend.store.record_run(delivery.run)
                delivery.run.id = run.id
                assert await broker.release(delivery) is True
            third = await broker.consume(0)
            assert (third.delivery_count, third.handed_back) == (3, 2)
            await engine.worker_loop.execute_delivered(third)
            done = await scheduler.get_run(f"{run.id}.d3")
        assert done.state is RunState.SUCCEEDED and "handed it back" in done.reason
        assert calls == ["job"]

    asyncio.run(main())
