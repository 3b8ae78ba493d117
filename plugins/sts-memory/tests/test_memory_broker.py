"""Memory-specific broker behaviour: wake-ups, closing, and bookkeeping that stays bounded."""

from __future__ import annotations

import asyncio

import pytest

from sts.plugin import Run
from sts_core.testing import FakeClock
from sts_memory.broker import MemoryBroker


def make_run(clock: FakeClock, name: str = "a", run_id: str = "r1") -> Run:
    return Run(id=run_id, task_name=name, task_version=1, scheduled_for=clock.now())


def test_a_woken_consumer_that_is_cancelled_passes_its_wakeup_to_the_next_waiter() -> None:
    clock = FakeClock()
    broker = MemoryBroker(clock, lease_time=30)

    async def main() -> None:
        first = asyncio.create_task(broker.consume(100))
        await clock.until_waiting(1)
        second = asyncio.create_task(broker.consume(100))
        await clock.until_waiting(2)
        await broker.enqueue(make_run(clock))  # wakes `first`, the longest waiting
        first.cancel()
        delivery = await asyncio.wait_for(second, 5)
        assert delivery is not None and delivery.run.id == "r1"

    asyncio.run(main())


def test_close_wakes_waiting_consumers_with_none() -> None:
    clock = FakeClock()
    broker = MemoryBroker(clock, lease_time=30)

    async def main() -> None:
        consumers = [asyncio.create_task(broker.consume(None)) for _ in range(3)]
        await clock.until_waiting(3)
        await broker.close()
        assert await asyncio.wait_for(asyncio.gather(*consumers), 5) == [None, None, None]

    asyncio.run(main())


def test_lease_bookkeeping_stays_bounded_over_many_deliveries() -> None:
    clock = FakeClock()
    broker = MemoryBroker(clock, lease_time=60)

    async def main() -> None:
        for i in range(10_000):
            await broker.enqueue(make_run(clock, run_id=f"r{i}"))
            delivery = await broker.consume(0)
            assert delivery is not None
            if i % 2:
                await broker.extend(delivery)
            await broker.ack(delivery)
            clock.advance(0.001)
        assert len(broker._leases) <= 1024 + 1
        assert await broker.depth() == 0

    asyncio.run(main())


def test_a_lease_ending_while_consumers_wait_is_noticed_without_new_work() -> None:
    clock = FakeClock()
    broker = MemoryBroker(clock, lease_time=30)

    async def main() -> None:
        first = asyncio.create_task(broker.consume(None))
        second = asyncio.create_task(broker.consume(None))
        await clock.until_waiting(2)
        await broker.enqueue(make_run(clock))
        taken = await asyncio.wait_for(first, 5)
        assert taken is not None
        await clock.settle()
        await clock.until_waiting(1)
        clock.advance(30)
        redelivered = await asyncio.wait_for(second, 5)
        assert redelivered is not None and redelivered.delivery_count == 2

    asyncio.run(main())


def test_a_lease_time_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="lease_time"):
        MemoryBroker(FakeClock(), lease_time=0)


def test_a_naive_delivery_time_is_refused() -> None:
    from datetime import datetime

    clock = FakeClock()

    async def main() -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            await MemoryBroker(clock).enqueue(make_run(clock), datetime(2026, 1, 1))

    asyncio.run(main())


def test_a_backward_wall_clock_jump_does_not_stall_a_delayed_run() -> None:
    from datetime import timedelta

    clock = FakeClock()
    broker = MemoryBroker(clock, lease_time=30)

    async def main() -> None:
        await broker.enqueue(make_run(clock), clock.now() + timedelta(seconds=10))
        clock.jump(-3600)
        clock.advance(9)
        assert await broker.consume(0) is None
        clock.advance(1)
        delivery = await broker.consume(0)
        assert delivery is not None and delivery.run.id == "r1"

    asyncio.run(main())


def test_a_forward_wall_clock_jump_does_not_release_a_delayed_run_early() -> None:
    from datetime import timedelta

    clock = FakeClock()
    broker = MemoryBroker(clock, lease_time=30)

    async def main() -> None:
        await broker.enqueue(make_run(clock), clock.now() + timedelta(seconds=10))
        clock.jump(3600)
        assert await broker.consume(0) is None
        clock.advance(9)
        assert await broker.consume(0) is None
        clock.advance(1)
        delivery = await broker.consume(0)
        assert delivery is not None and delivery.run.id == "r1"

    asyncio.run(main())


def test_a_waiting_consumer_gets_a_delayed_run_on_time_across_a_backward_jump() -> None:
    from datetime import timedelta

    clock = FakeClock()
    broker = MemoryBroker(clock, lease_time=30)

    async def main() -> None:
        consumer = asyncio.create_task(broker.consume(None))
        await clock.until_waiting(1)
        await broker.enqueue(make_run(clock), clock.now() + timedelta(seconds=10))
        await clock.settle()
        await clock.until_waiting(1)
        clock.jump(-3600)
        clock.advance(10)
        delivery = await asyncio.wait_for(consumer, 5)
        assert delivery is not None and delivery.run.id == "r1"

    asyncio.run(main())


def test_delayed_runs_keep_deadline_order_across_a_jump_and_past_times_come_first() -> None:
    from datetime import timedelta

    clock = FakeClock()
    broker = MemoryBroker(clock, lease_time=30)

    async def main() -> None:
        await broker.enqueue(make_run(clock, run_id="in20"), clock.now() + timedelta(seconds=20))
        clock.jump(-3600)
        # 10s from the new wall time: due before "in20", though its wall time is an hour earlier.
        await broker.enqueue(make_run(clock, run_id="in10"), clock.now() + timedelta(seconds=10))
        await broker.enqueue(make_run(clock, run_id="past"), clock.now() - timedelta(seconds=5))
        first = await broker.consume(0)
        assert first is not None and first.run.id == "past"
        assert await broker.ack(first) is True
        assert await broker.consume(0) is None
        clock.advance(30)
        delivered = [(await broker.consume(0)).run.id for _ in range(2)]
        assert delivered == ["in10", "in20"]

    asyncio.run(main())


def test_the_memory_broker_is_not_durable() -> None:
    assert MemoryBroker.durable is False
    assert MemoryBroker(FakeClock()).durable is False


def test_drain_returns_ready_and_delayed_runs_but_not_runs_in_flight() -> None:
    from datetime import timedelta

    clock = FakeClock()
    broker = MemoryBroker(clock, lease_time=30)

    async def main() -> None:
        await broker.enqueue(make_run(clock, run_id="leased"))
        await broker.enqueue(make_run(clock, run_id="expired"))
        leased = await broker.consume(0)
        expired = await broker.consume(0)
        assert leased is not None and expired is not None
        clock.advance(20)
        assert await broker.extend(leased) is True
        clock.advance(15)  # `expired` lost its lease but was not handed out again
        await broker.enqueue(make_run(clock, run_id="ready1"))
        await broker.enqueue(make_run(clock, run_id="later"), clock.now() + timedelta(seconds=60))
        await broker.enqueue(make_run(clock, run_id="sooner"), clock.now() + timedelta(seconds=30))
        await broker.enqueue(make_run(clock, run_id="ready2"))

        drained = await broker.drain()
        assert [run.id for run in drained] == ["ready1", "ready2", "sooner", "later"]
        assert await broker.depth() == 2  # the two runs in flight
        assert await broker.drain() == []
        assert await broker.ack(leased) is True
        assert await broker.ack(expired) is True
        clock.advance(3600)
        assert await broker.consume(0) is None
        assert await broker.depth() == 0

    asyncio.run(main())


def test_a_consumer_waiting_for_a_drained_delayed_run_keeps_waiting_and_gets_new_work() -> None:
    from datetime import timedelta

    clock = FakeClock()
    broker = MemoryBroker(clock, lease_time=30)

    async def main() -> None:
        consumer = asyncio.create_task(broker.consume(None))
        await clock.until_waiting(1)
        await broker.enqueue(make_run(clock, run_id="delayed"), clock.now() + timedelta(seconds=10))
        await clock.settle()
        assert [run.id for run in await broker.drain()] == ["delayed"]
        await clock.advance_settled(20)
        assert not consumer.done()
        await broker.enqueue(make_run(clock, run_id="new"))
        delivery = await asyncio.wait_for(consumer, 5)
        assert delivery is not None and delivery.run.id == "new"

    asyncio.run(main())


def test_changes_to_a_delivered_run_do_not_reach_its_redelivery_nor_the_drained_run() -> None:
    from sts.plugin import RunState

    clock = FakeClock()
    broker = MemoryBroker(clock, lease_time=30)

    async def main() -> None:
        run = make_run(clock)
        run.result = ["kept"]
        await broker.enqueue(run)
        run.result.append("changed by the caller")
        first = await broker.consume(0)
        assert first is not None and first.run.result == ["kept"]
        first.run.state = RunState.RUNNING  # as a worker does
        first.run.result.append("changed by the worker")
        clock.advance(31)  # the lease ends: the run is delivered again as it was queued
        again = await broker.consume(0)
        assert again is not None and again.delivery_count == 2
        assert (again.run.state, again.run.result) == (RunState.SCHEDULED, ["kept"])
        assert await broker.release(again)
        (drained,) = await broker.drain()
        assert (drained.id, drained.state, drained.result) == ("r1", RunState.SCHEDULED, ["kept"])

    asyncio.run(main())
