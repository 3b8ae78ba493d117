"""W1 engine throughput (memory, one process): N no-op runs through the whole engine.

    python -m workloads.w1_engine SYSTEM [--runs 20000]

SYSTEM is one of ``sts-sync``, ``sts-async`` (STS, memory backend: fire, record, events),
``apscheduler3-thread`` (BackgroundScheduler, memory job store, its default thread pool) or
``apscheduler3-asyncio`` (AsyncIOScheduler). All N jobs are added first (not timed), then the
clock runs from start until the last has run. Prints ``{"runs_per_s", "cpu_us_per_run"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import threading
import time
from datetime import UTC, datetime

done = itertools.count(1)
finished = threading.Event()
TOTAL = 0


def noop() -> None:
    if next(done) == TOTAL:
        finished.set()


async def anoop() -> None:
    noop()


def sts(runs: int, function: object) -> tuple[float, float]:
    """Wall and CPU seconds of ``runs`` runs through STS (``bench/engine_quick.py`` measures them)."""
    from engine_quick import throughput

    rate, cpu_us = asyncio.run(throughput(function, runs))
    return runs / rate, cpu_us * runs / 1e6


def apscheduler_thread(runs: int) -> tuple[float, float]:
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone=UTC)
    now = datetime.now(UTC)
    for i in range(runs):
        scheduler.add_job(noop, "date", run_date=now, id=f"t{i}", misfire_grace_time=None)
    wall, cpu = time.perf_counter(), time.process_time()
    scheduler.start()
    finished.wait()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    scheduler.shutdown(wait=False)
    return wall, cpu


def apscheduler_asyncio(runs: int) -> tuple[float, float]:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    async def main() -> tuple[float, float]:
        scheduler = AsyncIOScheduler(timezone=UTC)
        now = datetime.now(UTC)
        for i in range(runs):
            scheduler.add_job(anoop, "date", run_date=now, id=f"t{i}", misfire_grace_time=None)
        wall, cpu = time.perf_counter(), time.process_time()
        scheduler.start()
        while not finished.is_set():
            await asyncio.sleep(0.001)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        scheduler.shutdown(wait=False)
        return wall, cpu

    return asyncio.run(main())


SYSTEMS = {
    "sts-sync": lambda runs: sts(runs, noop),
    "sts-async": lambda runs: sts(runs, anoop),
    "apscheduler3-thread": apscheduler_thread,
    "apscheduler3-asyncio": apscheduler_asyncio,
}


def main() -> None:
    global TOTAL
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("--runs", type=int, default=20_000)
    args = parser.parse_args()
    TOTAL = args.runs
    wall, cpu = SYSTEMS[args.system](args.runs)
    print(json.dumps({"runs_per_s": args.runs / wall, "cpu_us_per_run": cpu / args.runs * 1e6}))


if __name__ == "__main__":
    main()
