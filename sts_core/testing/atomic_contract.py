"""``AtomicStepsContract``: the conformance suite of a backend offering ``AtomicSteps``
(``claim_and_enqueue``, ``record_and_ack``; see ``sts_core.interfaces``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from sts_core.testing.clock import FakeClock
from sts_core.testing.contracts import _BackendSuite, _run, _task

if TYPE_CHECKING:
    from sts_core.interfaces import Backend


class AtomicStepsContract(_BackendSuite):
    """What a backend's ``AtomicSteps`` must do. Subclass as ``Test<Backend>AtomicSteps`` next to
    the store and broker suites, with the same ``make_backend`` fixture."""

    def run_steps(self, make_backend: Any, body: Callable[[Any, FakeClock], Awaitable[Any]], **settings: Any) -> Any:
        async def checked(backend: Backend, clock: FakeClock) -> Any:
            from sts_core.interfaces import AtomicSteps

            assert isinstance(backend, AtomicSteps), "the backend does not offer claim_and_enqueue and record_and_ack"
            return await body(backend, clock)

        return self.run_backend(make_backend, checked, **settings)

    def test_claim_and_enqueue_claims_once_admits_up_to_the_limit_and_queues_the_run(self, make_backend: Any) -> None:
        from sts_core.interfaces import DueFire

        async def body(backend: Any, clock: FakeClock) -> None:
            now = clock.now()
            later = now + timedelta(seconds=1)
            await backend.store.set_next_fire("a", now)
            fire = DueFire("a", now)
            outcomes = await asyncio.gather(
                *(backend.claim_and_enqueue((fire, later), _run("a", now), 1, None) for _ in range(5))
            )
            assert sorted(outcomes) == ["lost"] * 4 + ["queued"]
            assert await backend.store.get_next_fire("a") == later
            assert await backend.broker.depth() == 1
            # the first fire is still active: the next one is claimed but not admitted
            assert await backend.claim_and_enqueue((DueFire("a", later), None), _run("a", later), 1, None) == "limited"
            assert await backend.store.get_next_fire("a") is None
            assert await backend.broker.depth() == 1
            # without a claim (a manual fire, a dependent's run) and with a delay
            run = _run("b", now)
            assert await backend.claim_and_enqueue(None, run, 1, now + timedelta(seconds=10)) == "queued"
            assert await backend.broker.consume(0) is not None  # the run of "a"
            assert await backend.broker.consume(0) is None
            clock.advance(10)
            delivery = await backend.broker.consume(0)
            assert delivery is not None and delivery.run.id == run.id

        self.run_steps(make_backend, body)

    def test_claim_and_enqueue_with_a_version_queues_only_that_stored_version(self, make_backend: Any) -> None:
        async def body(backend: Any, clock: FakeClock) -> None:
            now = clock.now()
            assert await backend.claim_and_enqueue(None, _run("a", now), 9, None, version=1) == "gone"
            await backend.store.put_tasks([_task("a")])
            assert await backend.claim_and_enqueue(None, _run("a", now), 9, None, version=2) == "changed"
            assert await backend.broker.depth() == 0  # neither was queued
            assert await backend.claim_and_enqueue(None, _run("a", now), 9, None, version=1) == "queued"
            await backend.store.put_tasks([_task("a", every=5)], replace=True)
            assert await backend.claim_and_enqueue(None, _run("a", now), 9, None, version=1) == "changed"
            assert await backend.claim_and_enqueue(None, _run("a", now), 9, None, version=2) == "queued"
            assert await backend.broker.depth() == 2

        self.run_steps(make_backend, body)

    def test_record_and_ack_does_everything_with_a_current_lease_and_nothing_with_a_stale_one(
        self, make_backend: Any
    ) -> None:
        from sts_core.run import Run, RunState

        async def body(backend: Any, clock: FakeClock) -> None:
            now = clock.now()
            run = _run("a", now)
            assert await backend.claim_and_enqueue(None, run, 1, None) == "queued"
            stale = await backend.broker.consume(0)
            assert stale is not None
            clock.advance(10)
            current = await backend.broker.consume(0)  # the lease ran out: delivered again
            assert current is not None and current.token > stale.token

            late = Run.from_dict({**run.to_dict(), "state": "succeeded"})
            assert await backend.record_and_ack(late, stale, None, None, True) is False
            assert await backend.store.get_run(run.id) is None  # the stale result overwrote nothing
            assert await backend.broker.depth() == 1

            failed = Run.from_dict({**run.to_dict(), "state": "retrying"})
            retry = _run("a", now)
            assert await backend.record_and_ack(failed, current, retry, now + timedelta(seconds=5), False) is True
            recorded = await backend.store.get_run(run.id)
            assert recorded is not None and recorded.state is RunState.RETRYING
            assert await backend.broker.depth() == 1  # the retry, delayed
            assert await backend.store.begin_fire("a", run.fire_id, 1) is True  # the fire still counts
            assert await backend.store.begin_fire("a", "other", 1) is False

            clock.advance(5)
            again = await backend.broker.consume(0)
            assert again is not None and again.run.id == retry.id
            done = Run.from_dict({**retry.to_dict(), "state": "succeeded"})
            assert await backend.record_and_ack(done, again, None, None, True) is True
            assert await backend.broker.depth() == 0
            assert await backend.store.begin_fire("a", "other", 1) is True  # the fire ended

        self.run_steps(make_backend, body, lease_time=10)

    def test_record_without_ack_keeps_the_lease_for_the_ack_that_follows(self, make_backend: Any) -> None:
        from sts_core.run import Run, RunState

        async def body(backend: Any, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            assert await backend.claim_and_enqueue(None, run, 1, None) == "queued"
            delivery = await backend.broker.consume(0)
            assert delivery is not None
            done = Run.from_dict({**run.to_dict(), "state": "succeeded"})
            assert await backend.record_and_ack(done, delivery, None, None, False, False) is True
            recorded = await backend.store.get_run(run.id)
            assert recorded is not None and recorded.state is RunState.SUCCEEDED
            assert await backend.broker.ack(delivery) is True  # still held: the engine acks after the dependents

        self.run_steps(make_backend, body)

    def test_a_shared_backend_answers_a_step_asked_again_after_a_lost_reply_as_the_first_time(
        self, make_backend: Any
    ) -> None:
        from sts_core.run import Run

        async def body(backend: Any, clock: FakeClock) -> None:
            if not backend.store.shared:
                pytest.skip("a backend in one process loses no replies: its steps are never asked again")
            run = _run("a", clock.now())
            assert await backend.claim_and_enqueue(None, run, 5, None) == "queued"
            assert await backend.claim_and_enqueue(None, run, 5, None) == "queued"
            assert await backend.broker.depth() == 1  # queued once
            delivery = await backend.broker.consume(0)
            done = Run.from_dict({**run.to_dict(), "state": "succeeded"})
            assert await backend.record_and_ack(done, delivery, None, None, True) is True
            assert await backend.record_and_ack(done, delivery, None, None, True) is True  # the same step again
            assert await backend.broker.depth() == 0
            other = Run.from_dict({**run.to_dict(), "state": "failed"})
            assert await backend.record_and_ack(other, delivery, None, None, True) is False  # not the same step

        self.run_steps(make_backend, body)
