"""What the Redis broker adds to the conformance suite: several runs per round trip."""

from __future__ import annotations

import asyncio

from sts.plugin import Run, fire_id, new_run_id
from sts_core.testing import FakeClock, StubConfig
from sts_redis.backend import build_backend


def test_consume_many_leases_up_to_limit_ready_runs_in_order_each_with_its_own_token(redis_url: str) -> None:
    async def main() -> None:
        clock = FakeClock()
        backend = build_backend(StubConfig({"redis": {"url": redis_url, "key_prefix": "m"}}), clock)
        broker = backend.broker
        await backend.store.open()
        await broker.open()
        try:
            now = clock.now()
            runs = [Run(id=new_run_id(), task_name="t", task_version=1, scheduled_for=now, fire_id=fire_id("t", now))
                    for _ in range(5)]
            for run in runs:
                await broker.enqueue(run)
            first = await broker.consume_many(3, 0)
            assert [d.run.id for d in first] == [run.id for run in runs[:3]]
            assert len({d.token for d in first}) == 3
            rest = await broker.consume_many(10, 0)
            assert [d.run.id for d in rest] == [run.id for run in runs[3:]]
            assert await broker.consume_many(10, 0) == []
            for delivery in first + rest:
                assert await broker.ack(delivery) is True
            assert await broker.depth() == 0
        finally:
            await broker.close()
            await backend.store.close()

    asyncio.run(main())
