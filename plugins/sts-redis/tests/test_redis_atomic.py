"""The backend's atomic steps: ``claim_and_enqueue`` (a fire's claim, its max_instances admission and its
run's queueing) and ``record_and_ack`` (a run's outcome, its ack, its retry, the end of its fire)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sts.plugin import DueFire, Run, fire_id, new_run_id
from sts_core.testing import FakeClock, StubConfig
from sts_redis.backend import build_backend


def _run(name: str, when: Any) -> Run:
    return Run(id=new_run_id(), task_name=name, task_version=1, scheduled_for=when, fire_id=fire_id(name, when))


def test_claim_and_enqueue_claims_once_admits_up_to_the_limit_and_queues_the_run(redis_url: str) -> None:
    async def main() -> None:
        clock = FakeClock()
        backend = build_backend(StubConfig({"redis": {"url": redis_url, "key_prefix": "d"}}), clock)
        await backend.store.open()
        await backend.broker.open()
        try:
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
            # without a claim (a dependent's run) and with a delay
            run = _run("b", now)
            assert await backend.claim_and_enqueue(None, run, 1, now + timedelta(seconds=10)) == "queued"
            assert await backend.broker.consume(0) is not None  # the first run of "a"
            assert await backend.broker.consume(0) is None
            clock.advance(10)
            delivery = await backend.broker.consume(0)
            assert delivery is not None and delivery.run.id == run.id
        finally:
            await backend.broker.close()
            await backend.store.close()

    asyncio.run(main())


def test_record_and_ack_does_everything_with_a_current_lease_and_nothing_with_a_stale_one(redis_url: str) -> None:
    from sts.plugin import RunState

    async def main() -> None:
        clock = FakeClock()
        backend = build_backend(
            StubConfig({"redis": {"url": redis_url, "key_prefix": "f", "lease_time": 10}}), clock
        )
        await backend.store.open()
        await backend.broker.open()
        try:
            now = clock.now()
            run = _run("a", now)
            assert await backend.claim_and_enqueue(None, run, 1, None) == "queued"
            stale = await backend.broker.consume(0)
            assert stale is not None
            clock.advance(10)
            current = await backend.broker.consume(0)
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
        finally:
            await backend.broker.close()
            await backend.store.close()

    asyncio.run(main())


def test_steps_asked_again_after_a_lost_reply_do_nothing_twice(redis_url: str) -> None:
    async def main() -> None:
        clock = FakeClock()
        backend = build_backend(StubConfig({"redis": {"url": redis_url, "key_prefix": "i"}}), clock)
        await backend.store.open()
        await backend.broker.open()
        try:
            now = clock.now()
            run = _run("a", now)
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
        finally:
            await backend.broker.close()
            await backend.store.close()

    asyncio.run(main())


def test_claim_and_enqueue_with_a_version_queues_only_that_stored_version(redis_url: str) -> None:
    from sts.plugin import Task

    async def main() -> None:
        clock = FakeClock()
        backend = build_backend(StubConfig({"redis": {"url": redis_url, "key_prefix": "v"}}), clock)
        await backend.store.open()
        await backend.broker.open()
        try:
            now = clock.now()
            assert await backend.claim_and_enqueue(None, _run("a", now), 9, None, version=1) == "gone"
            await backend.store.put_tasks([Task("a", "sts_core.testing:noop")])
            assert await backend.claim_and_enqueue(None, _run("a", now), 9, None, version=2) == "changed"
            assert await backend.broker.depth() == 0  # neither was queued
            assert await backend.claim_and_enqueue(None, _run("a", now), 9, None, version=1) == "queued"
            await backend.store.put_tasks([Task("a", "sts_core.testing:noop", every=5)], replace=True)
            assert await backend.claim_and_enqueue(None, _run("a", now), 9, None, version=1) == "changed"
            assert await backend.claim_and_enqueue(None, _run("a", now), 9, None, version=2) == "queued"
            assert await backend.broker.depth() == 2
        finally:
            await backend.broker.close()
            await backend.store.close()

    asyncio.run(main())


def test_get_tasks_returns_the_stored_ones_of_the_names_asked(redis_url: str) -> None:
    from sts.plugin import Task

    async def main() -> None:
        backend = build_backend(StubConfig({"redis": {"url": redis_url, "key_prefix": "g"}}), FakeClock())
        await backend.store.open()
        try:
            await backend.store.put_tasks([Task(f"t{i}", "sts_core.testing:noop") for i in range(3)])
            found = await backend.store.get_tasks(["t2", "nope", "t0", "t2"])
            assert sorted(found) == ["t0", "t2"] and found["t2"] == await backend.store.get_task("t2")
            assert await backend.store.get_tasks([]) == {}
        finally:
            await backend.store.close()

    asyncio.run(main())
