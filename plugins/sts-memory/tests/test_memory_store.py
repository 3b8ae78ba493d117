"""Memory-specific store behaviour: costs that must not grow with the number of tasks or runs."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from sts.plugin import Run
from sts_core.testing import FakeClock
from sts_memory.store import MemoryStore


class CountingTime(datetime):
    """A datetime that counts how often it is compared: the store's unit of work."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        CountingTime.comparisons += 1
        return datetime.__eq__(self, other)

    def __lt__(self, other: datetime) -> bool:
        CountingTime.comparisons += 1
        return datetime.__lt__(self, other)

    def __le__(self, other: datetime) -> bool:
        CountingTime.comparisons += 1
        return datetime.__le__(self, other)

    def __gt__(self, other: datetime) -> bool:
        CountingTime.comparisons += 1
        return datetime.__gt__(self, other)

    __hash__ = datetime.__hash__


def counting(when: datetime) -> CountingTime:
    return CountingTime(when.year, when.month, when.day, when.hour, when.minute, when.second, tzinfo=UTC)


def test_due_fires_over_100k_tasks_costs_comparisons_in_k_log_n_not_n() -> None:
    store = MemoryStore(FakeClock())
    start = datetime(2026, 1, 1, tzinfo=UTC)
    offsets = list(range(100_000))
    random.Random(7).shuffle(offsets)

    async def main() -> None:
        for offset in offsets:
            await store.set_next_fire(f"t{offset}", counting(start + timedelta(seconds=offset)))
        now = counting(start + timedelta(seconds=9))
        CountingTime.comparisons = 0
        assert await store.next_due_time() == start
        due = await store.due_fires(now, 100)
        assert [fire.task_name for fire in due] == [f"t{i}" for i in range(10)]
        for fire in due:
            assert await store.claim_fire(fire, counting(fire.scheduled_for + timedelta(days=1)))
        assert await store.due_fires(now, 100) == []
        # k=10 fires, log2(n)=17: a few hundred comparisons; a scan would need 100,000.
        assert CountingTime.comparisons < 2_000

    asyncio.run(main())


def test_rescheduling_the_same_tasks_keeps_the_due_heap_bounded() -> None:
    store = MemoryStore(FakeClock())
    start = datetime(2026, 1, 1, tzinfo=UTC)

    async def main() -> None:
        for step in range(200):
            for i in range(50):
                await store.set_next_fire(f"t{i}", start + timedelta(seconds=1000 - step))
        assert len(store._heap) <= 1024 + 1
        assert await store.next_due_time() == start + timedelta(seconds=801)
        assert len(await store.due_fires(start + timedelta(days=1), 1000)) == 50

    asyncio.run(main())


def test_age_bookkeeping_stays_bounded_when_count_retention_drops_runs() -> None:
    clock = FakeClock()
    store = MemoryStore(clock, max_runs_per_task=5, max_age=7 * 86400)

    async def main() -> None:
        for i in range(10_000):
            await store.record_run(Run(id=f"r{i}", task_name="a", task_version=1, scheduled_for=clock.now()))
        assert len(store._runs) == 5
        assert len(store._recorded) <= 1024 + 1

    asyncio.run(main())


def test_unlimited_history_keeps_every_run() -> None:
    clock = FakeClock()
    store = MemoryStore(clock, max_runs_per_task=None, max_age=None)

    async def main() -> None:
        for i in range(3_000):
            await store.record_run(Run(id=f"r{i}", task_name="a", task_version=1, scheduled_for=clock.now()))
            clock.advance(3600)
        assert len(await store.list_runs("a", limit=10_000)) == 3_000

    asyncio.run(main())


def test_a_naive_next_fire_time_is_refused_with_the_task_name() -> None:
    store = MemoryStore(FakeClock())

    async def main() -> None:
        with pytest.raises(ValueError, match=r"'report'.*timezone-aware"):
            await store.set_next_fire("report", datetime(2026, 1, 1))

    asyncio.run(main())
