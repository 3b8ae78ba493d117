"""History and the garbage collector: what a full collection costs with many runs in the memory store.

    python -m workloads.history_gc [--runs 1000000] [--tasks 1000] [--seconds 5] [--fire-tasks 1000]

The issue's target: no full (generation 2) collection longer than 10 ms with 1,000,000 runs in
the history. In one process:

1. An ``AsyncTaskScheduler(Config())`` (memory backend, every default but an unlimited history
   count) is opened and its store filled with ``--runs`` finished runs of ``--tasks`` tasks
   through the store's public ``record_run``, each recorded twice (queued, then succeeded: what
   the engine writes for a run). ``fill_s`` is the wall time of that.
2. ``collect_ms``: the median (``collect_max_ms``: the longest) of 5 ``gc.collect()`` calls with
   the runs in the history, wall time; ``collect_cpu_ms``: the median of their process CPU time
   (steadier on a shared machine, where wall time includes waiting for a core); ``tracked``: how
   many objects the collector tracks (every one is walked by a full collection);
   ``rss_bytes_per_run``: the growth of VmRSS over step 1 per run.
3. Scheduling: ``--fire-tasks`` interval tasks every second, first fires at a whole second, run
   for ``--seconds`` seconds (every run recorded, on top of the history); halfway, 50 ms before a
   whole second (so that the fires of that second wait for it), the loop itself calls
   ``gc.collect()``: the full collection Python makes on its own sooner or later (when the objects
   that survived since the last one reach a quarter of all tracked objects), at a known time.
   ``gc.callbacks`` times every collection: ``sched_full_max_ms`` is the longest full one
   (``sched_full_max_cpu_ms``: the most CPU time one took), ``sched_full`` how many ran (the
   forced one included), ``sched_gc_max_ms`` the longest of any generation; ``sched_p99_ms``: the
   p99 lateness of the fires (function entry minus the fire's scheduled time).

No ``gc.freeze()``: what a library user gets. Prints one JSON object with those keys.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ENTRIES: list[tuple[float, float]] = []  # (scheduled, entered) of the scheduling step's fires


def rss_bytes() -> int:
    """This process's resident set size (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def fill(store: Any, runs: int, tasks: int) -> None:
    """``runs`` finished runs of ``tasks`` tasks, a second apart per task, each recorded twice."""
    from sts_core.run import Run, RunState, fire_id, new_run_id

    base = datetime.now(UTC) - timedelta(seconds=runs // tasks + 1)
    for i in range(runs):
        name, when = f"h{i % tasks}", base + timedelta(seconds=i // tasks)
        run = Run(new_run_id(), name, 1, when, fire_id=fire_id(name, when), created_at=when, worker="bench:1")
        await store.record_run(run)
        run.state, run.started_at, run.ended_at, run.duration = RunState.SUCCEEDED, when, when, 0.0001
        await store.record_run(run)


def timed_collections(times: int = 5) -> tuple[list[float], list[float]]:
    """Milliseconds of ``times`` full collections: wall time, and process CPU time."""
    wall, cpu = [], []
    for _ in range(times):
        began, began_cpu = time.perf_counter(), time.process_time()
        gc.collect()
        wall.append((time.perf_counter() - began) * 1000)
        cpu.append((time.process_time() - began_cpu) * 1000)
    return wall, cpu


async def main(args: argparse.Namespace) -> dict[str, float]:
    from sts_core.config import Config
    from sts_core.scheduler import AsyncTaskScheduler
    from sts_core.task import Task

    pauses: list[tuple[int, float, float]] = []  # (generation, wall ms, CPU ms)
    began = [0.0, 0.0]

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[:] = time.perf_counter(), time.process_time()
        else:
            pauses.append((info["generation"], (time.perf_counter() - began[0]) * 1000,
                           (time.process_time() - began[1]) * 1000))

    def job(scheduled: list[float]) -> Any:
        async def entered() -> None:
            ENTRIES.append((scheduled[0], time.time()))
            scheduled[0] += 1.0

        return entered

    out: dict[str, float] = {"runs": args.runs}
    async with AsyncTaskScheduler(Config({"history": {"max_runs_per_task": None}})) as scheduler:
        gc.collect()
        rss = rss_bytes()
        started = time.perf_counter()
        await fill(scheduler.backend.store, args.runs, args.tasks)
        out["fill_s"] = time.perf_counter() - started
        collects, cpu = timed_collections()
        out["rss_bytes_per_run"] = (rss_bytes() - rss) / args.runs
        out["collect_ms"], out["collect_max_ms"] = statistics.median(collects), max(collects)
        out["collect_cpu_ms"] = statistics.median(cpu)
        out["tracked"] = len(gc.get_objects())

        first = math.floor(time.time()) + 2.0
        await scheduler.add_tasks([
            Task(f"f{i}", job([first]), every=1, start=datetime.fromtimestamp(first, UTC))
            for i in range(args.fire_tasks)
        ])
        gc.callbacks.append(watch)
        loop = asyncio.get_running_loop()
        loop.call_later(first + args.seconds // 2 - 0.05 - time.time(), gc.collect)
        await scheduler.start()
        await asyncio.sleep(first + args.seconds + 0.5 - time.time())
        gc.callbacks.remove(watch)
        await scheduler.stop()
    full = [ms for generation, ms, _ in pauses if generation == 2]
    late = sorted((entered - scheduled) * 1000 for scheduled, entered in ENTRIES)
    out.update({
        "sched_full_max_ms": max(full, default=0.0), "sched_full": len(full),
        "sched_full_max_cpu_ms": max((cpu for generation, _, cpu in pauses if generation == 2), default=0.0),
        "sched_gc_max_ms": max((ms for _, ms, _ in pauses), default=0.0),
        "sched_p99_ms": late[min(len(late) - 1, math.ceil(0.99 * len(late)) - 1)] if late else float("nan"),
        "sched_fires": len(late),
    })
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs put in the history first")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks those runs belong to")
    parser.add_argument("--seconds", type=int, default=5, help="seconds of scheduling measured")
    parser.add_argument("--fire-tasks", type=int, default=1000, help="tasks every second while scheduling")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
