"""W5 scale: N scheduled tasks, none of them due: adding them, their memory, and one fire's cost.

    python -m workloads.w5_scale SYSTEM@N [--fires 500] [--rounds 9] [--batch 100000] [--max N]

SYSTEM is ``sts-memory`` or ``sts-redis`` (STS, memory or Redis backend, both roles in this
process), ``apscheduler3-memory`` or ``apscheduler3-redis`` (AsyncIOScheduler with its memory
job store or its RedisJobStore); N is how many tasks, e.g. ``sts-memory@1000000``. The Redis
systems start their own redis-server on loopback (no persistence, ``sts_redis.testing.RedisServer``),
stopped on exit.

1. K probe tasks are added first (not timed), not due.
2. N interval tasks (every hour, first fire 2-3 hours ahead, phases spread over the hour and
   added in a scrambled order, not sorted by fire time) are built and added in batches of
   ``--batch`` (STS: one ``add_tasks`` call per batch; APScheduler: ``add_job`` per job, its
   scheduler started paused). ``add_s`` is the wall time of building and adding them.
3. Memory: the growth of this process's RSS (``/proc/self/status`` VmRSS, after
   ``gc.collect()``) and of Redis's ``used_memory`` over step 2, divided by N.
4. Fire cost: the scheduler is started; each round moves the K probes' next fire to one instant
   0.3 s ahead (the store's set_next_fire; APScheduler: modify_job), then measures this
   process's CPU time and the wall time from that instant until the K probes have run (STS:
   and their runs are recorded). ``fire_us`` is the median over the rounds of CPU-µs per fire,
   ``fire_wall_us`` of wall-µs per fire. With nothing else due, a cost that grows with N means
   a step scans or shifts something proportional to all tasks.
5. ``add_one_ms``: one more task added with N stored (one ``add_tasks`` call; APScheduler:
   ``add_job``); ``start_s``: ``start()`` with N stored (APScheduler: ``resume()``).

Prints ``{"tasks", "add_s", "add_us_per_task", "add_one_ms", "rss_bytes_per_task",
"redis_bytes_per_task", "start_s", "fire_us", "fire_wall_us", "seconds"}`` (``redis_bytes_per_task``
is 0 for the memory systems). ``--max M`` skips the systems with N above M (for quick runs): they
print ``{"unsupported": why}``, which run.py reports as the row's reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

KINDS = ("sts-memory", "sts-redis", "apscheduler3-memory", "apscheduler3-redis")
SIZES = (1_000, 100_000, 1_000_000)
SYSTEMS = [f"{kind}@{size}" for kind in KINDS for size in SIZES]
EVERY = 3600.0
AHEAD = timedelta(hours=2)  # the N tasks' first fires lie 2-3 hours ahead: none is due while measured
PROBE_AHEAD = timedelta(days=1)  # the probes' own schedule, far away; each round moves them
LEAD = 0.3  # seconds between moving the probes and their fire
SCRAMBLE = 7_919  # a prime: (i * SCRAMBLE) % n visits every phase once, out of order, for n = 10**k
FUNCTION = "workloads.w5_scale:noop"  # the N tasks' function, by import path as in a task file


class Probe:
    """Counts probe runs; ``reached`` is set when ``target`` runs have happened."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.reached = asyncio.Event()

    def expect(self, more: int) -> None:
        self.target = self.count + more
        self.reached.clear()

    async def run(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.reached.set()


PROBE: Probe


async def noop() -> None:
    """The N tasks' function (never runs during the measurement)."""


async def probe() -> None:
    """The probe tasks' function (APScheduler stores it by reference)."""
    await PROBE.run()


def rss_bytes() -> int:
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def phase(i: int, n: int) -> timedelta:
    """Task i's first fire after the base time: phases spread over one interval, scrambled."""
    return timedelta(seconds=(i * SCRAMBLE) % n * EVERY / n)


async def fire_rounds(fires: int, rounds: int, move: Callable[[datetime], Awaitable[None]],
                      settle: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Median CPU-µs and wall-µs per fire over ``rounds`` rounds of ``fires`` probes due at once."""
    cpu_us, wall_us = [], []
    for _ in range(rounds):
        at = datetime.now(UTC) + timedelta(seconds=LEAD)
        PROBE.expect(fires)
        await move(at)
        await asyncio.sleep(max((at - datetime.now(UTC)).total_seconds() - 0.05, 0.0))
        cpu, wall = time.process_time(), time.perf_counter() + (at - datetime.now(UTC)).total_seconds()
        await asyncio.wait_for(PROBE.reached.wait(), 120)
        await settle()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        cpu_us.append(cpu / fires * 1e6)
        wall_us.append(wall / fires * 1e6)
        await asyncio.sleep(0.1)  # let anything after the runs (events, history) finish between rounds
    return statistics.median(cpu_us), statistics.median(wall_us)


# --- STS -------------------------------------------------------------------------------------------


async def sts(n: int, fires: int, rounds: int, batch: int, redis_url: str | None,
              redis_memory: Callable[[], int]) -> dict[str, float]:
    from sts_core.config import Config
    from sts_core.scheduler import AsyncTaskScheduler
    from sts_core.task import Task

    config: dict = {"logging": {"loglevel": "WARNING"}}
    if redis_url is not None:
        config.update(scheduler_backend="redis", redis={"url": redis_url, "key_prefix": "bench"})
    async with AsyncTaskScheduler(Config(config)) as scheduler:
        scheduler.register_function("w5_probe", probe)
        far = datetime.now(UTC) + PROBE_AHEAD
        probes = [f"p{i}" for i in range(fires)]
        await scheduler.add_tasks([Task(name, "w5_probe", every=EVERY, start=far) for name in probes])
        rss, used = rss_bytes(), redis_memory()
        base = datetime.now(UTC) + AHEAD
        started = time.perf_counter()
        for first in range(0, n, batch):
            await scheduler.add_tasks([
                Task(f"t{i}", FUNCTION, every=EVERY, start=base + phase(i, n))
                for i in range(first, min(first + batch, n))
            ])
        add_s = time.perf_counter() - started
        rss, used = rss_bytes() - rss, redis_memory() - used
        one = time.perf_counter()
        await scheduler.add_task(Task("one-more", FUNCTION, every=EVERY, start=base))
        one = time.perf_counter() - one
        start_s = time.perf_counter()
        await scheduler.start()
        start_s = time.perf_counter() - start_s
        store = scheduler.backend.store

        async def move(at: datetime) -> None:
            for name in probes:
                await store.set_next_fire(name, at)
            scheduler.engine.wake()

        fire_us, fire_wall_us = await fire_rounds(fires, rounds, move, scheduler.wait_idle)
        await scheduler.stop()
    return {"add_s": add_s, "add_one_ms": one * 1000, "rss": rss, "redis": used, "start_s": start_s,
            "fire_us": fire_us, "fire_wall_us": fire_wall_us}


# --- APScheduler 3 ---------------------------------------------------------------------------------


async def apscheduler(n: int, fires: int, rounds: int, redis_port: int | None,
                      redis_memory: Callable[[], int]) -> dict[str, float]:
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    if redis_port is None:
        store = MemoryJobStore()
    else:
        from apscheduler.jobstores.redis import RedisJobStore

        store = RedisJobStore(jobs_key="bench.jobs", run_times_key="bench.run_times", host="127.0.0.1",
                              port=redis_port)
    scheduler = AsyncIOScheduler(timezone=UTC, jobstores={"default": store})
    scheduler.start(paused=True)
    try:
        far = datetime.now(UTC) + PROBE_AHEAD
        probes = [f"p{i}" for i in range(fires)]
        for name in probes:
            scheduler.add_job(probe, "interval", seconds=EVERY, start_date=far, id=name)
        rss, used = rss_bytes(), redis_memory()
        base = datetime.now(UTC) + AHEAD
        started = time.perf_counter()
        for i in range(n):
            scheduler.add_job(noop, "interval", seconds=EVERY, start_date=base + phase(i, n), id=f"t{i}")
        add_s = time.perf_counter() - started
        rss, used = rss_bytes() - rss, redis_memory() - used
        one = time.perf_counter()
        scheduler.add_job(noop, "interval", seconds=EVERY, start_date=base, id="one-more")
        one = time.perf_counter() - one
        start_s = time.perf_counter()
        scheduler.resume()
        start_s = time.perf_counter() - start_s

        async def move(at: datetime) -> None:
            for name in probes:
                scheduler.modify_job(name, next_run_time=at)

        async def settle() -> None:
            await asyncio.sleep(0)

        fire_us, fire_wall_us = await fire_rounds(fires, rounds, move, settle)
    finally:
        scheduler.shutdown(wait=False)
    return {"add_s": add_s, "add_one_ms": one * 1000, "rss": rss, "redis": used, "start_s": start_s,
            "fire_us": fire_us, "fire_wall_us": fire_wall_us}


# --- main ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """A throwaway redis-server on 127.0.0.1 (no persistence) for the duration; yields its port."""
    from sts_redis.testing import RedisServer

    with RedisServer() as server:
        yield server.port


def measure(kind: str, n: int, args: argparse.Namespace) -> dict[str, float]:
    if not kind.endswith("-redis"):
        if kind == "sts-memory":
            return asyncio.run(sts(n, args.fires, args.rounds, args.batch, None, lambda: 0))
        return asyncio.run(apscheduler(n, args.fires, args.rounds, None, lambda: 0))
    import redis

    with redis_server() as port, redis.Redis(host="127.0.0.1", port=port) as client:
        def used_memory() -> int:
            return int(client.info("memory")["used_memory"])

        if kind == "sts-redis":
            url = f"redis://127.0.0.1:{port}/0"
            return asyncio.run(sts(n, args.fires, args.rounds, args.batch, url, used_memory))
        return asyncio.run(apscheduler(n, args.fires, args.rounds, port, used_memory))


def main() -> None:
    global PROBE
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=SYSTEMS, metavar="SYSTEM@N", help=", ".join(SYSTEMS))
    parser.add_argument("--fires", type=int, default=500, help="probe tasks fired at once per round (K)")
    parser.add_argument("--rounds", type=int, default=9, help="fire rounds; the median is reported")
    parser.add_argument("--batch", type=int, default=100_000, help="tasks per add_tasks call (STS)")
    parser.add_argument("--max", type=int, default=None, help="skip systems with more tasks (quick runs)")
    args = parser.parse_args()
    kind, _, size = args.system.partition("@")
    n = int(size)
    if args.max is not None and n > args.max:
        print(json.dumps({"unsupported": f"skipped: {n:,} tasks is above --max {args.max:,} (--quick)"}))
        return
    PROBE = Probe()
    began = time.perf_counter()
    result = measure(kind, n, args)
    print(json.dumps({
        "tasks": n,
        "add_s": result["add_s"],
        "add_us_per_task": result["add_s"] / n * 1e6,
        "add_one_ms": result["add_one_ms"],
        "rss_bytes_per_task": result["rss"] / n,
        "redis_bytes_per_task": result["redis"] / n,
        "start_s": result["start_s"],
        "fire_us": result["fire_us"],
        "fire_wall_us": result["fire_wall_us"],
        "seconds": time.perf_counter() - began,
    }))


if __name__ == "__main__":
    main()
