"""Memory-specific store behaviour: costs that must not grow with the number of tasks or runs."""

from __future__ import annotations

import asyncio
import gc
import random
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from sts.plugin import Run, RunState, Task
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
        assert len(store._recorded_at) == len(store._ids) == 5

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


def tracked_objects_after_collecting() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_the_run_history_adds_no_objects_for_the_garbage_collector_to_walk() -> None:
    clock = FakeClock()
    store = MemoryStore(clock, max_runs_per_task=None, max_age=7 * 86400)

    async def main() -> None:
        for i in range(5_000):
            run = Run(id=f"r{i}", task_name=f"t{i % 10}", task_version=1, scheduled_for=clock.now(),
                      fire_id=f"t{i % 10}@{i}", created_at=clock.now(), worker="host:1")
            await store.record_run(run)
            run.state, run.started_at, run.ended_at, run.duration = RunState.SUCCEEDED, clock.now(), clock.now(), 0.5
            await store.record_run(run)  # an update, as the worker records one
            clock.advance(1)

    before = tracked_objects_after_collecting()
    asyncio.run(main())
    # A full collection walks every tracked object: 5,000 runs kept must not mean 5,000 more.
    assert tracked_objects_after_collecting() - before < 200
    runs = asyncio.run(store.list_runs(limit=10**6))
    assert len(runs) == 5_000 and runs[0].id == "r4999" and runs[0].state is RunState.SUCCEEDED


def test_a_list_or_dict_result_is_kept_as_a_copy_and_read_back_as_one() -> None:
    store = MemoryStore(FakeClock())
    result = {"rows": [1, 2]}

    async def main() -> None:
        when = datetime(2026, 1, 1, tzinfo=UTC)
        await store.record_run(Run(id="r1", task_name="a", task_version=1, scheduled_for=when,
                                   state=RunState.SUCCEEDED, result=result))
        result["rows"].append(3)
        first = await store.get_run("r1")
        assert first is not None and first.result == {"rows": [1, 2]} and first.state is RunState.SUCCEEDED
        first.result["rows"].append(4)
        again = await store.get_run("r1")
        assert again is not None and again.result == {"rows": [1, 2]}

    asyncio.run(main())


def test_age_retention_across_tasks_keeps_its_bookkeeping_to_the_runs_kept() -> None:
    clock = FakeClock()
    store = MemoryStore(clock, max_runs_per_task=None, max_age=60)

    async def main() -> None:
        for i in range(5_000):
            await store.record_run(Run(id=f"r{i}", task_name=f"t{i % 3}", task_version=1, scheduled_for=clock.now()))
            clock.advance(1)
        kept = await store.list_runs(limit=10**6)
        assert [run.id for run in kept] == [f"r{i}" for i in range(4_999, 4_938, -1)]
        assert [run.id for run in await store.list_runs("t1", limit=3)] == ["r4999", "r4996", "r4993"]
        assert len(store._runs) == len(store._ids) == len(store._recorded_at) == 61

    asyncio.run(main())


def test_a_stored_task_with_its_next_fire_costs_the_store_under_160_bytes_besides_the_task() -> None:
    store = MemoryStore(FakeClock())
    start = datetime(2026, 1, 1, tzinfo=UTC)
    tasks = [Task(f"t{i}", "os:getcwd", every=3600) for i in range(10_000)]
    times = [start + timedelta(seconds=i) for i in range(10_000)]

    async def main() -> None:
        stored = await store.put_tasks(tasks)
        for task, when in zip(stored, times, strict=True):
            await store.set_next_fire(task.name, when)

    gc.collect()
    tracemalloc.start()
    try:
        asyncio.run(main())
        gc.collect()
        # The stored copies of the tasks (with their version) are the tasks' own cost; measured apart.
        traced = tracemalloc.get_traced_memory()[0]
        copies = sum(sys.getsizeof(task) for task in asyncio.run(store.list_tasks()))
    finally:
        tracemalloc.stop()
    assert (traced - copies) / 10_000 < 160


def test_fires_due_at_the_same_time_come_out_by_task_name() -> None:
    store = MemoryStore(FakeClock())
    when = datetime(2026, 1, 1, tzinfo=UTC)

    async def main() -> None:
        for name in ("c", "a", "b"):
            await store.set_next_fire(name, when)
        await store.set_next_fire("a", when)  # set again: its old heap entry is stale, not a second fire
        assert [fire.task_name for fire in await store.due_fires(when, 10)] == ["a", "b", "c"]

    asyncio.run(main())


def test_active_fires_count_alike_whether_a_task_has_one_or_several() -> None:
    store = MemoryStore(FakeClock())
    assert store.begin_fire_now("a", "a@1", 1) and store.begin_fire_now("a", "a@1", 1)  # counted once
    assert not store.begin_fire_now("a", "a@2", 1)
    store.end_fire_now("a", "a@2")  # never begun: a@1 still counts
    assert not store.begin_fire_now("a", "a@2", 1)
    assert store.begin_fire_now("a", "a@2", 2) and not store.begin_fire_now("a", "a@3", 2)
    store.end_fire_now("a", "a@1")
    store.end_fire_now("a", "a@2")
    assert store.begin_fire_now("a", "a@3", 1)
    store.end_fire_now("a", "a@3")
    assert not store.begin_fire_now("b", "b@1", 0)
    assert store.begin_fire_now("c", "c@1", 1)
    assert not gc.is_tracked(store._active["c"])  # one fire: no set for the garbage collector to follow
