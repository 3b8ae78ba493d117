"""Memory-specific broker behaviour: wake-ups, closing, and bookkeeping that stays bounded."""

from __future__ import annotations

import asyncio

import pytest

from sts_core.model import Run
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
