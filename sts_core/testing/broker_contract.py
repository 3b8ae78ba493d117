"""``BrokerContract``: the conformance suite every ``Broker`` runs (see ``sts_core.testing``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from sts_core.testing.clock import FakeClock
from sts_core.testing.contracts import DEFAULT_SETTINGS, _BackendSuite, _finish, _run

if TYPE_CHECKING:
    from sts_core.interfaces import Backend, Broker


class BrokerContract(_BackendSuite):
    """What every ``Broker`` must do. Subclass as ``Test<Backend>Broker`` and give ``make_backend``.

    Lease rules tested here: each delivery has a new, larger token; ack and extend succeed
    with the current token, also after the lease ended as long as the run has not been
    delivered again; a redelivery increments ``delivery_count``.
    """

    lease_time = DEFAULT_SETTINGS["lease_time"]

    def run_broker(
        self, make_backend: Any, body: Callable[[Broker, FakeClock], Awaitable[Any]], **settings: Any
    ) -> Any:
        async def with_broker(backend: Backend, clock: FakeClock) -> Any:
            return await body(backend.broker, clock)

        return self.run_backend(make_backend, with_broker, **settings)

    def test_an_enqueued_run_is_delivered_under_a_lease(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run)
            delivery = await broker.consume(0)
            assert delivery is not None
            assert delivery.run.to_dict() == run.to_dict()
            assert delivery.delivery_count == 1
            assert delivery.lease_until == pytest.approx(clock.monotonic() + self.lease_time)
            assert await broker.ack(delivery) is True
            assert await broker.consume(0) is None

        self.run_broker(make_backend, body)

    def test_the_delivered_run_is_the_one_enqueued_not_later_changes_to_it(self, make_backend: Any) -> None:
        from sts_core.run import RunState

        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run)
            run.state = RunState.FAILED
            delivery = await broker.consume(0)
            assert delivery is not None and delivery.run.state is RunState.SCHEDULED

        self.run_broker(make_backend, body)

    def test_consume_with_zero_timeout_returns_none_at_once_when_nothing_is_ready(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            assert await _finish(broker.consume(0)) is None

        self.run_broker(make_backend, body)

    def test_consume_returns_none_when_the_clock_passes_its_timeout(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            consumer = asyncio.create_task(broker.consume(5))
            await clock.until_waiting(1)
            clock.advance(4)
            await clock.settle()
            assert not consumer.done()
            clock.advance(1)
            assert await _finish(consumer) is None

        self.run_broker(make_backend, body)

    def test_a_waiting_consumer_wakes_when_a_run_is_enqueued(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            consumer = asyncio.create_task(broker.consume(100))
            await clock.until_waiting(1)
            run = _run("a", clock.now())
            await broker.enqueue(run)
            delivery = await _finish(consumer)
            assert delivery is not None and delivery.run.id == run.id

        self.run_broker(make_backend, body)

    def test_ready_runs_are_delivered_in_enqueue_order(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            runs = [_run(f"t{i}", clock.now()) for i in range(20)]
            for run in runs:
                await broker.enqueue(run)
            delivered = []
            while (delivery := await broker.consume(0)) is not None:
                delivered.append(delivery.run.id)
                await broker.ack(delivery)
            assert delivered == [run.id for run in runs]

        self.run_broker(make_backend, body)

    def test_a_delayed_run_is_not_delivered_before_its_time(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run, clock.now() + timedelta(seconds=10))
            assert await broker.consume(0) is None
            clock.advance(9.5)
            assert await broker.consume(0) is None
            clock.advance(0.5)
            delivery = await broker.consume(0)
            assert delivery is not None and delivery.run.id == run.id

        self.run_broker(make_backend, body)

    def test_a_run_enqueued_for_a_past_time_is_ready_at_once(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run, clock.now() - timedelta(seconds=5))
            delivery = await broker.consume(0)
            assert delivery is not None and delivery.run.id == run.id

        self.run_broker(make_backend, body)

    def test_delayed_runs_are_delivered_in_time_order(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            later, sooner = _run("later", clock.now()), _run("sooner", clock.now())
            await broker.enqueue(later, clock.now() + timedelta(seconds=20))
            await broker.enqueue(sooner, clock.now() + timedelta(seconds=10))
            clock.advance(30)
            first, second = await broker.consume(0), await broker.consume(0)
            assert first is not None and second is not None
            assert [first.run.id, second.run.id] == [sooner.id, later.id]

        self.run_broker(make_backend, body)

    def test_a_waiting_consumer_receives_a_delayed_run_when_it_is_due(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            consumer = asyncio.create_task(broker.consume(100))
            await clock.until_waiting(1)
            run = _run("a", clock.now())
            await broker.enqueue(run, clock.now() + timedelta(seconds=10))
            await clock.settle()
            await clock.until_waiting(1)
            clock.advance(9)
            await clock.settle()
            assert not consumer.done()
            clock.advance(1)
            delivery = await _finish(consumer)
            assert delivery is not None and delivery.run.id == run.id

        self.run_broker(make_backend, body)

    def test_an_expired_lease_is_redelivered_with_a_new_token_and_count(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run)
            first = await broker.consume(0)
            assert first is not None
            clock.advance(self.lease_time / 2)
            assert await broker.consume(0) is None
            clock.advance(self.lease_time / 2)
            second = await broker.consume(0)
            assert second is not None and second.run.to_dict() == run.to_dict()
            assert second.token > first.token
            assert second.delivery_count == 2
            assert await broker.ack(first) is False
            assert await broker.extend(first) is False
            assert await broker.ack(second) is True
            assert await broker.depth() == 0

        self.run_broker(make_backend, body)

    def test_a_waiting_consumer_receives_a_run_whose_lease_expired(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            await broker.enqueue(_run("a", clock.now()))
            first = await broker.consume(0)
            assert first is not None
            consumer = asyncio.create_task(broker.consume(1000))
            await clock.until_waiting(1)
            clock.advance(self.lease_time)
            second = await _finish(consumer)
            assert second is not None and second.run.id == first.run.id and second.delivery_count == 2

        self.run_broker(make_backend, body)

    def test_a_lease_that_ended_can_be_acked_until_the_run_is_delivered_again(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            await broker.enqueue(_run("a", clock.now()))
            delivery = await broker.consume(0)
            assert delivery is not None
            clock.advance(self.lease_time + 1)
            assert await broker.ack(delivery) is True
            assert await broker.consume(0) is None
            assert await broker.depth() == 0

        self.run_broker(make_backend, body)

    def test_extend_renews_the_lease_so_the_run_is_not_redelivered(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            await broker.enqueue(_run("a", clock.now()))
            delivery = await broker.consume(0)
            assert delivery is not None
            clock.advance(self.lease_time * 0.75)
            assert await broker.extend(delivery) is True
            assert delivery.lease_until == pytest.approx(clock.monotonic() + self.lease_time)
            clock.advance(self.lease_time * 0.75)
            assert await broker.consume(0) is None
            assert await broker.ack(delivery) is True
            clock.advance(self.lease_time * 2)
            assert await broker.consume(0) is None

        self.run_broker(make_backend, body)

    def test_ack_and_extend_with_a_token_never_issued_are_refused(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            await broker.enqueue(_run("a", clock.now()))
            delivery = await broker.consume(0)
            assert delivery is not None
            assert await broker.ack(delivery) is True
            assert await broker.ack(delivery) is False
            assert await broker.extend(delivery) is False

        self.run_broker(make_backend, body)

    def test_depth_counts_ready_delayed_and_unacked_runs(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            assert await broker.depth() == 0
            await broker.enqueue(_run("a", clock.now()))
            await broker.enqueue(_run("b", clock.now()))
            await broker.enqueue(_run("c", clock.now()), clock.now() + timedelta(seconds=60))
            assert await broker.depth() == 3
            delivery = await broker.consume(0)
            assert delivery is not None
            assert await broker.depth() == 3
            await broker.ack(delivery)
            assert await broker.depth() == 2

        self.run_broker(make_backend, body)

    def test_queue_counts_split_the_depth_by_where_runs_are(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            from sts_core.interfaces import CountsQueues

            if not isinstance(broker, CountsQueues):
                pytest.skip("this broker does not offer queue_counts (optional)")
            queue_counts = broker.queue_counts
            assert await queue_counts() == {"ready": 0, "delayed": 0, "leased": 0, "dead": 0}
            for name in "abc":
                await broker.enqueue(_run(name, clock.now()))
            await broker.enqueue(_run("d", clock.now()), clock.now() + timedelta(seconds=60))
            leased = await broker.consume(0)
            dead = await broker.consume(0)
            assert leased is not None and dead is not None
            assert await broker.dead_letter(dead, "poison") is True
            assert await queue_counts() == {"ready": 1, "delayed": 1, "leased": 1, "dead": 1}

        self.run_broker(make_backend, body)

    def test_every_waiting_consumer_gets_work_when_several_runs_arrive(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            consumers = [asyncio.create_task(broker.consume(100)) for _ in range(3)]
            await clock.until_waiting(3)
            for name in "abc":
                await broker.enqueue(_run(name, clock.now()))
            deliveries = await _finish(asyncio.gather(*consumers))
            assert sorted(d.run.task_name for d in deliveries) == ["a", "b", "c"]

        self.run_broker(make_backend, body)

    def test_a_cancelled_consumer_loses_no_run(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            waiting = asyncio.create_task(broker.consume(100))
            await clock.until_waiting(1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            run = _run("a", clock.now())
            await broker.enqueue(run)
            delivery = await _finish(broker.consume(100))
            assert delivery is not None and delivery.run.id == run.id

        self.run_broker(make_backend, body)

    def test_concurrent_consumers_receive_every_run_exactly_once(self, make_backend: Any) -> None:
        total, consumers = 500, 4

        async def body(broker: Broker, clock: FakeClock) -> None:
            received: list[str] = []
            all_in = asyncio.Event()

            async def consume_until_idle() -> None:
                while (delivery := await broker.consume(10)) is not None:
                    received.append(delivery.run.id)
                    if len(received) >= total:
                        all_in.set()
                    assert await broker.ack(delivery) is True

            tasks = [asyncio.create_task(consume_until_idle()) for _ in range(consumers)]
            runs = [_run(f"t{i % 7}", clock.now()) for i in range(total)]
            for i, run in enumerate(runs):
                await broker.enqueue(run)
                if i % 25 == 0:
                    await asyncio.sleep(0)
            await _finish(all_in.wait())
            await clock.until_waiting(consumers)
            clock.advance(10)
            await _finish(asyncio.gather(*tasks))
            assert len(received) == total
            assert sorted(received) == sorted(run.id for run in runs)
            assert await broker.depth() == 0

        self.run_broker(make_backend, body)

    def test_release_hands_the_run_back_at_once_and_fences_the_old_lease(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run)
            first = await broker.consume(0)
            assert first is not None
            assert await broker.release(first) is True
            second = await broker.consume(0)
            assert second is not None and second.run.id == run.id and second.token > first.token
            assert (second.delivery_count, second.handed_back) == (2, 1)
            assert await broker.release(first) is False
            assert await broker.ack(first) is False
            assert await broker.ack(second) is True

        self.run_broker(make_backend, body)

    def test_a_dead_lettered_run_is_not_delivered_again_and_is_listed_with_its_reason(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run)
            delivery = await broker.consume(0)
            assert delivery is not None
            assert await broker.dead_letter(delivery, "killed its worker 4 times") is True
            assert await broker.ack(delivery) is False
            clock.advance(self.lease_time * 2)
            assert await broker.consume(0) is None
            assert await broker.depth() == 0
            dead = await broker.dead_letters()
            assert [(d["id"], d["reason"]) for d in dead] == [(run.id, "killed its worker 4 times")]
            assert dead[0]["payload"]["task_name"] == "a"

        self.run_broker(make_backend, body)

    def test_dead_letter_with_a_stale_lease_is_refused(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            await broker.enqueue(_run("a", clock.now()))
            first = await broker.consume(0)
            assert first is not None
            clock.advance(self.lease_time)
            second = await broker.consume(0)
            assert second is not None
            assert await broker.dead_letter(first, "stale") is False
            assert await broker.dead_letters() == []
            assert await broker.ack(second) is True

        self.run_broker(make_backend, body)

    def test_ack_with_a_next_run_queues_it_in_the_same_step(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            first, retry = _run("a", clock.now()), _run("a", clock.now(), attempt=2)
            await broker.enqueue(first)
            delivery = await broker.consume(0)
            assert delivery is not None
            assert await broker.ack(delivery, retry, clock.now() + timedelta(seconds=5)) is True
            assert await broker.consume(0) is None
            clock.advance(5)
            second = await broker.consume(0)
            assert second is not None and second.run.id == retry.id and second.run.attempt == 2
            assert second.delivery_count == 1
            assert await broker.ack(delivery, _run("a", clock.now())) is False  # stale: nothing queued
            assert await broker.ack(second) is True
            assert await broker.depth() == 0

        self.run_broker(make_backend, body)

    # -- what the Protocol declares, and the optional capabilities -----------------------------

    def test_the_broker_declares_its_traits(self, make_backend: Any) -> None:
        from sts_core.interfaces import Broker

        async def body(broker: Broker, clock: FakeClock) -> None:
            assert isinstance(broker, Broker)
            flags = (broker.durable, broker.may_duplicate, broker.counts_may_skip)
            assert all(isinstance(flag, bool) for flag in flags)

        self.run_broker(make_backend, body)

    def test_consume_many_leases_up_to_limit_ready_runs_each_with_its_own_token(self, make_backend: Any) -> None:
        from sts_core.interfaces import ConsumesMany

        async def body(broker: Broker, clock: FakeClock) -> None:
            if not isinstance(broker, ConsumesMany):
                pytest.skip("this broker does not offer consume_many (optional)")
            runs = [_run(f"t{i}", clock.now()) for i in range(5)]
            for run in runs:
                await broker.enqueue(run)
            first = await broker.consume_many(3, 0)
            assert 1 <= len(first) <= 3
            taken = list(first)
            while len(taken) < len(runs):
                more = await broker.consume_many(10, 0)
                assert more, "consume_many(limit, 0) returned nothing while runs were ready"
                taken += more
            assert sorted(d.run.id for d in taken) == sorted(run.id for run in runs)
            assert len({d.token for d in taken}) == len(runs)
            assert await broker.consume_many(10, 0) == []
            for delivery in taken:
                assert await broker.ack(delivery) is True
            assert await broker.depth() == 0

        self.run_broker(make_backend, body)

    def test_drain_removes_and_returns_the_queued_runs_but_not_those_in_flight(self, make_backend: Any) -> None:
        from sts_core.interfaces import Drains

        async def body(broker: Broker, clock: FakeClock) -> None:
            if broker.durable or not isinstance(broker, Drains):
                pytest.skip("only a broker that is not durable drains (optional)")
            await broker.enqueue(_run("leased", clock.now()))
            leased = await broker.consume(0)
            assert leased is not None
            ready, later = _run("ready", clock.now()), _run("later", clock.now())
            await broker.enqueue(ready)
            await broker.enqueue(later, clock.now() + timedelta(seconds=60))
            assert sorted(run.id for run in await broker.drain()) == sorted([ready.id, later.id])
            assert await broker.depth() == 1  # the run in flight
            assert await broker.drain() == []
            assert await broker.ack(leased) is True
            clock.advance(120)
            assert await broker.consume(0) is None

        self.run_broker(make_backend, body)

    def test_stop_consuming_hands_back_runs_not_handed_over(self, make_backend: Any) -> None:
        from sts_core.interfaces import StopsConsuming

        async def body(broker: Broker, clock: FakeClock) -> None:
            if not isinstance(broker, StopsConsuming):
                pytest.skip("this broker does not push runs ahead of consume (optional)")
            runs = [_run(f"t{i}", clock.now()) for i in range(3)]
            for run in runs:
                await broker.enqueue(run)
            first = await _finish(broker.consume(30))  # a pushing broker may take more than one now
            assert first is not None
            await broker.stop_consuming()
            taken = [first]
            while len(taken) < len(runs):
                delivery = await broker.consume(0)
                assert delivery is not None, "a run was neither handed over nor handed back"
                taken.append(delivery)
            assert sorted(d.run.id for d in taken) == sorted(run.id for run in runs)
            for delivery in taken:
                assert await broker.ack(delivery) is True
            assert await broker.depth() == 0

        self.run_broker(make_backend, body)
