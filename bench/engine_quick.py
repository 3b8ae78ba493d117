"""A quick look at the engine's speed on the memory backend (the benchmark issue makes it rigorous).

    .venv/bin/python bench/engine_quick.py [--runs 20000] [--tasks 1000] [--seconds 5] [--add 100000]

Adding: how long one add_tasks call takes for A interval tasks.
Throughput: N tasks without a trigger each run once through the whole engine (due index, claim,
broker, worker, task type, run record); reports runs/s and CPU-µs per run for a sync and an async
no-op. Lateness: T interval tasks every second for S seconds, start phases spread across the
second; reports the p50/p99/max of (actual start - scheduled time), as a library user gets it
and with gc.freeze() after loading, as `sts run` does.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time

from sts_core.config import Config
from sts_core.scheduler import AsyncTaskScheduler
from sts_core.task import Task


def noop() -> None:
    """A synchronous no-op (runs in the thread pool)."""


async def anoop() -> None:
    """An asynchronous no-op (runs on the loop)."""


def _config() -> Config:
    return Config({"logging": {"loglevel": "WARNING"}, "history": {"max_runs_per_task": 10}})


async def throughput(function, runs: int) -> tuple[float, float]:
    async with AsyncTaskScheduler(_config()) as scheduler:
        await scheduler.add_tasks([Task(f"t{i}", function) for i in range(runs)])
        wall, cpu = time.perf_counter(), time.process_time()
        await scheduler.start()
        await asyncio.sleep(0)
        await scheduler.wait_idle()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await scheduler.stop()
    return runs / wall, cpu / runs * 1e6


async def add_time(count: int) -> float:
    """Seconds to add ``count`` interval tasks in one call (validation, plans, store, schedule)."""
    async with AsyncTaskScheduler(_config()) as scheduler:
        tasks = [Task(f"a{i}", "sts_core.testing:noop", every=60) for i in range(count)]
        started = time.perf_counter()
        await scheduler.add_tasks(tasks)
        return time.perf_counter() - started


async def lateness(tasks: int, seconds: float, freeze: bool) -> list[float]:
    late: list[float] = []

    async with AsyncTaskScheduler(_config()) as scheduler:
        from datetime import timedelta

        now = scheduler.clock.now()
        base = now.replace(microsecond=0) + timedelta(seconds=2)

        def make(i: int):
            async def job() -> None:
                pass

            return job

        await scheduler.add_tasks([
            Task(f"l{i}", make(i), every=1, start=base + timedelta(seconds=i / tasks)) for i in range(tasks)
        ])
        if freeze:
            gc.freeze()  # as `sts run` does once its tasks are loaded
        await scheduler.start()
        await asyncio.sleep(seconds + 2.5)
        await scheduler.stop()
        for run in await scheduler.runs(limit=10**9):
            if run.started_at is not None:
                late.append((run.started_at - run.scheduled_for).total_seconds() * 1000)
    return late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--add", type=int, default=100_000, help="tasks to add in one call (0: skip)")
    args = parser.parse_args()
    for label, function in (("sync no-op", noop), ("async no-op", anoop)):
        rate, cpu_us = asyncio.run(throughput(function, args.runs))
        print(f"{label:12s}: {args.runs} runs, {rate:,.0f} runs/s, {cpu_us:.1f} CPU-µs per run")
    if args.add:
        seconds = asyncio.run(add_time(args.add))
        print(f"add tasks   : {args.add} interval tasks in {seconds:.2f}s, {seconds / args.add * 1e6:.0f} µs per task")
    for freeze in (False, True):
        late = sorted(asyncio.run(lateness(args.tasks, args.seconds, freeze)))
        p99 = late[min(len(late) - 1, int(0.99 * len(late)))]
        print(
            f"lateness    : {args.tasks} tasks every 1s for {args.seconds:g}s{' (gc.freeze)' if freeze else ''}, "
            f"{len(late)} fires: p50 {statistics.median(late):.1f} ms, p99 {p99:.1f} ms, max {late[-1]:.1f} ms"
        )


if __name__ == "__main__":
    main()
