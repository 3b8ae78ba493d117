"""W2 firing precision (memory backend, one process): how late N one-second interval tasks start.

    python -m workloads.w2_precision SYSTEM [--seconds 10] [--drain 1.5] [--no-freeze]

SYSTEM is ``NAME@TASKS-PHASES[/library]``, e.g. ``sts@1000-aligned``, ``apscheduler3@10000-spread``
or ``sts@1000-aligned/library``:

- NAME: ``sts`` (AsyncTaskScheduler, memory backend, an async no-op), ``apscheduler3``
  (AsyncIOScheduler, memory job store, an async no-op), ``apscheduler3-thread`` (BackgroundScheduler,
  its default pool of 10 threads, a sync no-op), ``schedule`` (a ``run_pending()`` loop sleeping
  ``idle_seconds`` between passes, a sync no-op; aligned only, see below) or ``bare`` (the physical
  limit: a plain asyncio loop re-arming one ``loop.call_at`` handle per task, each fire starting
  an asyncio task for an async no-op, as a scheduler running coroutines has to; asyncio runs every
  due handle before the tasks they start).
- TASKS: how many tasks, each every second.
- PHASES: ``aligned`` (every task due at the whole second: the burst case) or ``spread`` (task i
  at i/TASKS past it).
- ``/library``: as a library user runs it rather than as ``sts run`` does: no ``gc.freeze()`` (in
  any system), and STS is the README's ``AsyncTaskScheduler(Config())`` with every default (its
  history keeps up to 1,000 runs per task for 7 days, so it grows all run long). Without it, STS
  keeps only the runs of the window in its history, and everything is frozen after loading.

The tasks are loaded first (not measured), their first fires set to a whole second a few seconds
ahead (``BASE``); then the collector is emptied and ``gc.freeze()`` called, for every system alike
(``--no-freeze`` or ``/library``: nowhere), as ``sts run`` does once its tasks are loaded. Lateness
is the wall time at which the user function is entered minus the time that fire was scheduled for,
the same probe for every system (STS's ``started_at`` is taken earlier, before the start is
recorded, so it is not used). Only fires
scheduled in ``[BASE, BASE + seconds)`` are judged: TASKS * seconds are expected; a fire that has
not started ``--drain`` seconds after the window counts as missed, like one the system skipped (the
default 1.5 s ends the run between two whole seconds, so stopping does not cut into an aligned
burst). The scheduled time of a fire is what the system scheduled it for: the run record's
``scheduled_for`` (STS: a task's started runs, in order, are its function's entries, in order), the
handle's target (bare), the job's ``next_run`` as it is called (``schedule``), the interval grid
(APScheduler, which never starts a fire more than its one-second ``misfire_grace_time`` late, so
the grid point is unambiguous). CPU seconds are the process's (every thread) across the window.

``schedule`` has no way to start a job at a chosen time or phase: ``every(1).seconds`` first runs
a job one second after it is added, and re-arms it one second after each run *ends*
(``next_run = now + 1s``), so its fires drift later by each run's lateness and, once the drift
adds up to a second, a slot is lost (``missed``). It calls the functions inline, one after the
other, in its own loop. For the aligned case the first fire is set by writing each job's
``next_run`` (the whole second); a phase within the second is not something ``schedule`` offers
or keeps, so ``schedule@N-spread`` is refused rather than faked.

The garbage collector is watched through ``gc.callbacks`` from the end of loading until the last
fire may start: ``gc_full_max_ms`` is the longest full (generation 2) collection, ``gc_full`` how many
there were, ``gc_max_ms`` the longest collection of any generation. A collection stops the loop,
so it adds to the lateness of every fire due while it runs.

Prints ``{"p50_ms", "p99_ms", "max_ms", "fires_per_s", "cpu_s", "cpu_us_per_fire", "fires", "missed",
"expected", "gc_full_max_ms", "gc_full", "gc_max_ms"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import logging
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

#: Probe records, appended at the entry of the user function: (task index, wall time[, scheduled]).
ENTRIES: list[tuple[Any, ...]] = []
#: BASE is this many whole seconds ahead, plus one per 5,000 tasks (loading 10,000 takes about one).
LEAD = 2
#: Seconds from the end of loading to BASE at least (loading that overruns it is an error).
MIN_MARGIN = 0.5


def probe(i: int) -> None:
    """The user function of the thread-based systems: note when it was entered."""
    ENTRIES.append((i, time.time()))


async def aprobe(i: int) -> None:
    """The user function of the asyncio-based systems: note when it was entered."""
    ENTRIES.append((i, time.time()))


class CpuWindow:
    """Process CPU seconds (all threads) between two wall times, read by a sleeping thread, so
    that no system's own loop has to take the readings."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end, self.cpu = start, end, 0.0
        self._thread = threading.Thread(target=self._measure, daemon=True, name="w2-cpu")
        self._thread.start()

    def _measure(self) -> None:
        time.sleep(max(self.start - time.time(), 0.0))
        began = time.process_time()
        time.sleep(max(self.end - time.time(), 0.0))
        self.cpu = time.process_time() - began

    def result(self) -> float:
        self._thread.join()
        return self.cpu


class GcWatch:
    """The collections the garbage collector makes once started: how long each generation's took."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float, float]] = []  # (generation, seconds, wall time at the end)
        self._began = 0.0

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._began, time.time()))

    def result(self, end: float) -> dict[str, float]:
        """The collections that ended before ``end`` (not those of reading the results)."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        pauses = [(generation, seconds) for generation, seconds, at in self.pauses if at <= end]
        full = [seconds for generation, seconds in pauses if generation == 2]
        return {"gc_full_max_ms": max(full, default=0.0) * 1000, "gc_full": len(full),
                "gc_max_ms": max((seconds for _, seconds in pauses), default=0.0) * 1000}


GC = GcWatch()


def loaded(base: float, freeze: bool) -> None:
    """Called by every system once its tasks are loaded: check the start is still ahead, then
    empty the collector, freeze what survives (unless ``--no-freeze`` or ``/library``) and start
    watching the collector."""
    margin = base - time.time()
    print(f"w2: loaded, {margin:.2f}s before the start", file=sys.stderr, flush=True)
    if margin < MIN_MARGIN:
        raise RuntimeError(f"loading the tasks overran the start ({margin:.2f}s left); raise LEAD")
    gc.collect()
    if freeze:
        gc.freeze()
    GC.start()


def utc(timestamp: float) -> datetime:
    """A wall time as an aware UTC datetime (what STS and APScheduler take)."""
    return datetime.fromtimestamp(timestamp, UTC)


# -- systems: each loads its tasks, runs until ``end`` and returns [(scheduled, started)] --------------


def run_sts(
    firsts: list[float], base: float, end: float, freeze: bool, library: bool = False,
) -> list[tuple[float, float]]:
    """STS, memory backend; the scheduled time of each entry is its run record's ``scheduled_for``
    (a task's started runs, in order, are its function's entries, in order). ``library``: as a
    library user gets it, ``AsyncTaskScheduler(Config())`` with every default."""
    from sts_core.config import Config
    from sts_core.scheduler import AsyncTaskScheduler
    from sts_core.task import Task

    def function(i: int) -> Callable[[], Any]:
        async def job() -> None:
            ENTRIES.append((i, time.time()))

        return job

    async def main() -> list[Any]:
        keep = int(end - base) + 10  # every run of the window stays in the history
        config = (Config() if library
                  else Config({"logging": {"loglevel": "WARNING"}, "history": {"max_runs_per_task": keep}}))
        async with AsyncTaskScheduler(config) as scheduler:
            await scheduler.add_tasks([
                Task(f"t{i}", function(i), every=1, start=utc(first)) for i, first in enumerate(firsts)
            ])
            loaded(base, freeze)
            await scheduler.start()
            await asyncio.sleep(end - time.time())
            await scheduler.stop()
            return await scheduler.runs(limit=10**9)

    runs = asyncio.run(main())
    scheduled: dict[int, list[tuple[datetime, float]]] = {}
    for run in runs:
        if run.started_at is not None:
            scheduled.setdefault(int(run.task_name[1:]), []).append((run.started_at, run.scheduled_for.timestamp()))
    entered: dict[int, list[float]] = {}
    for i, started in ENTRIES:
        entered.setdefault(i, []).append(started)
    pairs = []
    for i, starts in entered.items():
        for (_, when), started in zip(sorted(scheduled.get(i, [])), starts, strict=False):
            pairs.append((when, started))
    return pairs


def on_grid(firsts: list[float]) -> list[tuple[float, float]]:
    """Entries of a system that fires on each task's one-second grid and never more than a
    second late: the scheduled time is the latest grid point not after the entry."""
    return [(firsts[i] + math.floor(started - firsts[i]), started) for i, started in ENTRIES]


def quiet_shutdown(scheduler: Any) -> None:
    """Shut APScheduler down without a traceback for each job in flight it cancels (after the window)."""
    logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
    scheduler.shutdown(wait=False)


def run_apscheduler(firsts: list[float], base: float, end: float, freeze: bool) -> list[tuple[float, float]]:
    """APScheduler 3 AsyncIOScheduler, memory job store, default job settings."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    async def main() -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        for i, first in enumerate(firsts):
            scheduler.add_job(aprobe, "interval", seconds=1, start_date=utc(first), args=[i], id=f"t{i}")
        scheduler.start()  # adds the pending jobs to the store
        loaded(base, freeze)
        await asyncio.sleep(end - time.time())
        quiet_shutdown(scheduler)

    asyncio.run(main())
    return on_grid(firsts)


def run_apscheduler_thread(firsts: list[float], base: float, end: float, freeze: bool) -> list[tuple[float, float]]:
    """APScheduler 3 BackgroundScheduler, memory job store, its default thread pool."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone=UTC)
    for i, first in enumerate(firsts):
        scheduler.add_job(probe, "interval", seconds=1, start_date=utc(first), args=[i], id=f"t{i}")
    scheduler.start()
    loaded(base, freeze)
    time.sleep(end - time.time())
    quiet_shutdown(scheduler)
    return on_grid(firsts)


def run_schedule(firsts: list[float], base: float, end: float, freeze: bool) -> list[tuple[float, float]]:
    """``schedule``: its run_pending loop, sleeping until the next job is due. The first fire is set
    through each job's ``next_run``; later ones are where ``schedule`` puts them (a second after
    the previous run ended), read from ``next_run`` as the function is entered."""
    import schedule

    scheduler = schedule.Scheduler()
    jobs: list[schedule.Job] = []

    def job(i: int) -> None:
        ENTRIES.append((i, time.time(), jobs[i].next_run))

    for i, first in enumerate(firsts):
        added = scheduler.every(1).seconds.do(job, i)
        added.next_run = datetime.fromtimestamp(first)  # schedule's naive local time
        jobs.append(added)
    loaded(base, freeze)
    while (now := time.time()) < end:
        scheduler.run_pending()
        idle = scheduler.idle_seconds
        time.sleep(min(max(idle or 0.0, 0.0), end - now))
    return [(when.timestamp(), started) for _, started, when in ENTRIES]


def run_bare(firsts: list[float], base: float, end: float, freeze: bool) -> list[tuple[float, float]]:
    """The physical limit: one ``loop.call_at`` handle per task, re-armed a second later at each
    fire, each fire starting a task for an async no-op."""

    async def job(i: int, target: float) -> None:
        ENTRIES.append((i, time.time(), target))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        offset = time.time() - loop.time()  # wall minus the loop's monotonic clock
        running: set[asyncio.Task[None]] = set()

        def fire(i: int, target: float) -> None:
            loop.call_at(target + 1.0 - offset, fire, i, target + 1.0)
            task = loop.create_task(job(i, target))
            running.add(task)
            task.add_done_callback(running.discard)

        for i, first in enumerate(firsts):
            loop.call_at(first - offset, fire, i, first)
        loaded(base, freeze)
        await asyncio.sleep(end - time.time())

    asyncio.run(main())
    return [(target, started) for _, started, target in ENTRIES]


SYSTEMS: dict[str, Callable[[list[float], float, float, bool], list[tuple[float, float]]]] = {
    "sts": run_sts,
    "apscheduler3": run_apscheduler,
    "apscheduler3-thread": run_apscheduler_thread,
    "schedule": run_schedule,
    "bare": run_bare,
}
PHASES = ("aligned", "spread")


def parse_system(system: str) -> tuple[str, int, str, bool]:
    """``sts@1000-aligned`` -> ("sts", 1000, "aligned", False); ``.../library`` -> (..., True)."""
    case, slash, mode = system.partition("/")
    name, _, case = case.partition("@")
    tasks, _, phases = case.partition("-")
    if name not in SYSTEMS or not tasks.isdigit() or phases not in PHASES or (slash and mode != "library"):
        raise SystemExit(f"SYSTEM is NAME@TASKS-PHASES[/library]: NAME in {sorted(SYSTEMS)}, PHASES in {PHASES}; "
                         f"got {system!r}")
    if name == "schedule" and phases == "spread":
        raise SystemExit("schedule cannot start a job at a phase within the second (see the module docstring)")
    return name, int(tasks), phases, bool(slash)


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def summarize(pairs: list[tuple[float, float]], base: float, seconds: int, expected: int, cpu: float) -> dict:
    """Lateness of the fires scheduled within the window, and what was missed."""
    late = sorted((started - scheduled) * 1000 for scheduled, started in pairs if base <= scheduled < base + seconds)
    if not late:
        raise RuntimeError("no fire within the window started")
    return {
        "p50_ms": statistics.median(late), "p99_ms": percentile(late, 0.99), "max_ms": late[-1],
        "fires_per_s": len(late) / seconds, "cpu_s": cpu, "cpu_us_per_fire": cpu / len(late) * 1e6,
        "fires": len(late), "missed": expected - len(late), "expected": expected,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system", help="NAME@TASKS-PHASES, e.g. sts@1000-aligned")
    parser.add_argument("--seconds", type=int, default=10, help="the window judged, in whole seconds")
    parser.add_argument("--drain", type=float, default=1.5, help="seconds a late fire of the window may still start")
    parser.add_argument("--no-freeze", dest="freeze", action="store_false", help="skip gc.freeze() after loading")
    args = parser.parse_args()
    name, tasks, phases, library = parse_system(args.system)
    base = float(math.floor(time.time()) + LEAD + math.ceil(tasks / 5000))
    firsts = [base + (i / tasks if phases == "spread" else 0.0) for i in range(tasks)]
    firsts = [utc(first).timestamp() for first in firsts]  # as the systems hold them (microseconds)
    cpu = CpuWindow(base, base + args.seconds)
    system = functools.partial(run_sts, library=library) if name == "sts" else SYSTEMS[name]
    end = base + args.seconds + args.drain
    pairs = system(firsts, base, end, args.freeze and not library)
    print(json.dumps({**summarize(pairs, base, args.seconds, tasks * args.seconds, cpu.result()), **GC.result(end)}))


if __name__ == "__main__":
    main()
