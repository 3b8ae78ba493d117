"""The RabbitMQ broker passes the kernel's Broker conformance suite against a real node.

RabbitMQ holds a delayed run for real milliseconds in its TTL queues, which a ``FakeClock``
cannot move: the four tests of delayed delivery run here on the real clock, with delays of a
fraction of a second and the same assertions. Every other test runs as the kernel wrote it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from sts.plugin import SystemClock
from sts_core.testing import BrokerContract
from sts_core.testing.contracts import _run

#: The delay of the real-time tests, and how much later than due a delivery may be.
DELAY = 0.4
LATE = 0.5


def _real_time(make_broker: Any, body: Any) -> None:
    clock = SystemClock()
    broker = make_broker(clock)

    async def main() -> None:
        await broker.open()
        try:
            await asyncio.wait_for(body(broker, clock), 30)
        finally:
            await broker.close()

    asyncio.run(main())


class TestRabbitBroker(BrokerContract):
    def test_a_delayed_run_is_not_delivered_before_its_time(self, make_broker: Any) -> None:
        async def body(broker: Any, clock: SystemClock) -> None:
            run = _run("a", clock.now())
            due = time.monotonic() + DELAY
            await broker.enqueue(run, clock.now() + timedelta(seconds=DELAY))
            assert await broker.consume(0) is None
            delivery = await broker.consume(DELAY + LATE)
            arrived = time.monotonic()
            assert delivery is not None and delivery.run.id == run.id
            assert due - 0.005 <= arrived <= due + LATE

        _real_time(make_broker, body)

    def test_delayed_runs_are_delivered_in_time_order(self, make_broker: Any) -> None:
        async def body(broker: Any, clock: SystemClock) -> None:
            later, sooner = _run("later", clock.now()), _run("sooner", clock.now())
            await broker.enqueue(later, clock.now() + timedelta(seconds=2 * DELAY))
            await broker.enqueue(sooner, clock.now() + timedelta(seconds=DELAY))
            first = await broker.consume(3 * DELAY + LATE)
            assert first is not None
            await broker.ack(first)
            second = await broker.consume(3 * DELAY + LATE)
            assert second is not None
            assert [first.run.id, second.run.id] == [sooner.id, later.id]

        _real_time(make_broker, body)

    def test_a_waiting_consumer_receives_a_delayed_run_when_it_is_due(self, make_broker: Any) -> None:
        async def body(broker: Any, clock: SystemClock) -> None:
            consumer = asyncio.create_task(broker.consume(100))
            await asyncio.sleep(0.05)
            run = _run("a", clock.now())
            due = time.monotonic() + DELAY
            await broker.enqueue(run, clock.now() + timedelta(seconds=DELAY))
            await asyncio.sleep(DELAY / 2)
            assert not consumer.done()
            delivery = await asyncio.wait_for(consumer, DELAY + LATE)
            assert delivery is not None and delivery.run.id == run.id
            assert time.monotonic() >= due - 0.005

        _real_time(make_broker, body)

    def test_ack_with_a_next_run_queues_it_in_the_same_step(self, make_broker: Any) -> None:
        async def body(broker: Any, clock: SystemClock) -> None:
            first, retry = _run("a", clock.now()), _run("a", clock.now(), attempt=2)
            await broker.enqueue(first)
            delivery = await broker.consume(0)
            assert delivery is not None
            assert await broker.ack(delivery, retry, clock.now() + timedelta(seconds=DELAY)) is True
            assert await broker.consume(0) is None
            second = await broker.consume(DELAY + LATE)
            assert second is not None and second.run.id == retry.id and second.run.attempt == 2
            assert second.delivery_count == 1
            assert await broker.ack(delivery, _run("a", clock.now())) is False  # stale: nothing queued
            assert await broker.ack(second) is True
            assert await broker.depth() == 0

        _real_time(make_broker, body)
