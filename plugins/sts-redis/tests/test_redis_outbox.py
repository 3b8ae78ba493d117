"""The Redis store's outbox, used when runs go to a broker outside Redis: a run is staged in the
step that claims its fire, unstaged once published, and a run left staged is taken by one sweep."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sts.plugin import DueFire
from sts_core.testing import FakeClock, StubConfig
from sts_core.testing.contracts import _run
from sts_redis.backend import build_backend


def _with_store(redis_url: str, body: Any) -> None:
    clock = FakeClock()
    backend = build_backend(StubConfig({"redis": {"url": redis_url, "key_prefix": "outbox"}}), clock)

    async def main() -> None:
        await backend.store.open()
        try:
            await body(backend.store, clock)
        finally:
            await backend.store.close()

    asyncio.run(main())


def test_a_staged_run_is_taken_once_after_the_grace_and_not_after_it_is_unstaged(redis_url: str) -> None:
    async def body(store: Any, clock: FakeClock) -> None:
        run = _run("a", clock.now())
        at = clock.now() + timedelta(seconds=5)
        assert await store.stage_fire(None, run, 1, at) == "staged"
        assert await store.take_stranded(clock.now() - timedelta(seconds=1), 10) == []
        clock.advance(20)
        (taken,) = await store.take_stranded(clock.now() - timedelta(seconds=15), 10)
        assert taken[0].to_dict() == run.to_dict() and taken[1] == at
        assert await store.take_stranded(clock.now() - timedelta(seconds=15), 10) == []  # marked taken
        clock.advance(20)
        assert len(await store.take_stranded(clock.now() - timedelta(seconds=15), 10)) == 1
        await store.unstage(run.id)
        clock.advance(20)
        assert await store.take_stranded(clock.now(), 10) == []

    _with_store(redis_url, body)


def test_staging_claims_the_fire_and_counts_it_toward_max_instances(redis_url: str) -> None:
    async def body(store: Any, clock: FakeClock) -> None:
        from sts_core.testing.contracts import _task

        await store.put_task(_task("a"))
        due = clock.now()
        await store.set_next_fire("a", due)
        following = due + timedelta(seconds=30)
        first = _run("a", due)
        assert await store.stage_fire((DueFire("a", due), following), first, 1, None) == "staged"
        assert await store.get_next_fire("a") == following
        assert await store.stage_fire((DueFire("a", due), following), _run("a", due), 1, None) == "lost"
        second = _run("a", following)  # another fire of the task while the first is active
        assert await store.stage_fire(None, second, 1, None) == "limited"
        clock.advance(60)
        assert [run.id for run, _ in await store.take_stranded(clock.now(), 10)] == [first.id]

    _with_store(redis_url, body)
