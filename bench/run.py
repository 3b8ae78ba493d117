"""Run the benchmarks: STS next to the libraries people would pick instead, on the same machine,
in the same run. Standard library only: it builds its own environment.

    python3 bench/run.py [--quick] [--only W1,W6] [--reps 3]

1. ``bench/.venv`` is created (again when ``bench/requirements.txt`` changes) holding STS with
   every plugin and the peers (APScheduler 3, schedule, Celery, RQ, rq-scheduler, Dramatiq, Huey,
   arq, Taskiq).
2. Every workload runs every system ``--reps`` times, each repetition in a fresh process
   (``bench/workloads/<workload>.py``); the Redis workloads start their own ``redis-server`` on
   loopback in each. ``--quick`` runs one repetition of smaller workloads. A system that fails
   or cannot do a workload gets a row saying why, and the run goes on.
3. ``bench/results/<workload>.json`` gets the raw numbers, the machine, the versions and the
   exact commands; ``BENCHMARKS.md`` the tables: medians with min-max, and STS's ratio to each peer.

Workloads: W1 engine throughput, W2 firing precision, W3 queue throughput over Redis, W4
distributed periodic firing over Redis, W5 scale, W6 start-up (``WORKLOADS`` below says exactly).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import venv
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = BENCH / ".venv"
PYTHON = VENV / "bin" / "python"
REQUIREMENTS = BENCH / "requirements.txt"
RESULTS = BENCH / "results"
REPORT = ROOT / "BENCHMARKS.md"
PEER_PACKAGES = ("SimpleTaskScheduler", "APScheduler", "schedule", "celery", "rq", "dramatiq", "huey", "arq",
                 "taskiq", "taskiq-redis", "rq-scheduler", "redis", "pika")


@dataclass
class Metric:
    key: str
    label: str
    higher_is_better: bool


@dataclass
class Workload:
    """A workload: its module, the systems it runs, and which STS system each peer is compared with."""

    name: str
    title: str
    module: str
    systems: list[str]
    metrics: list[Metric]
    compare: dict[str, str]  # peer system -> the STS system it is compared with
    args: list[str] = field(default_factory=list)
    quick_args: list[str] = field(default_factory=list)
    note: str = ""


WORKLOADS = [
    Workload(
        "W1", "Engine throughput (memory backend, one process)", "workloads.w1_engine",
        ["sts-sync", "sts-async", "apscheduler3-thread", "apscheduler3-asyncio"],
        [Metric("runs_per_s", "runs/s", True), Metric("cpu_us_per_run", "CPU-µs per run", False)],
        {"apscheduler3-thread": "sts-sync", "apscheduler3-asyncio": "sts-async"},
        args=["--runs", "20000"], quick_args=["--runs", "5000"],
        note="20,000 jobs, each a no-op run once, added before the clock starts; from start until the last "
             "has run. STS: fire, run record, events, through the memory backend; sync functions in its "
             "thread pool, coroutines on the loop. APScheduler 3: memory job store, default thread pool "
             "(BackgroundScheduler) and AsyncIOScheduler.",
    ),
    Workload(
        "W2", "Firing precision (memory backend, one process)", "workloads.w2_precision",
        [f"{system}@{tasks}-{phases}{mode}" for mode in ("", "/library") for tasks in (1000, 10000)
         for phases in ("aligned", "spread")
         for system in ("sts", "bare", "apscheduler3", "apscheduler3-thread", "schedule")
         if not (system == "schedule" and phases == "spread")
         and not (mode and system in ("apscheduler3-thread", "schedule"))],
        [Metric("p50_ms", "p50 ms late", False), Metric("p99_ms", "p99 ms late", False),
         Metric("max_ms", "max ms late", False), Metric("cpu_us_per_fire", "CPU-µs per fire", False),
         Metric("missed", "missed", False), Metric("gc_full_max_ms", "longest full GC ms", False)],
        {f"{peer}@{tasks}-{phases}{mode}": f"sts@{tasks}-{phases}{mode}"
         for mode in ("", "/library") for tasks in (1000, 10000) for phases in ("aligned", "spread")
         for peer in ("bare", "apscheduler3", "apscheduler3-thread", "schedule")
         if not (peer == "schedule" and phases == "spread")
         and not (mode and peer in ("apscheduler3-thread", "schedule"))},
        args=["--seconds", "10"], quick_args=["--seconds", "3"],
        note="1,000 and 10,000 interval tasks every second, their first fires at one whole second (aligned: the "
             "burst case) or spread evenly across it (spread: task i at i/N), loaded before the clock starts (then "
             "gc.freeze() in every system, as `sts run` does), judged over the next 10 seconds (--quick: 3). Late: "
             "the wall time the no-op function is entered minus the time that fire was scheduled for, the same "
             "probe in every system. missed: fires of the window not started 1.5 s after it. CPU-µs per fire: the "
             "process's CPU time over the window per fire. STS: AsyncTaskScheduler, memory backend, an async "
             "function, default settings (every run recorded in its history). APScheduler 3: memory job store, "
             "default job settings; `apscheduler3` is AsyncIOScheduler with an async job, `apscheduler3-thread` "
             "BackgroundScheduler with its default 10 threads. `schedule`: its run_pending() loop calling the "
             "functions inline; it cannot start a job at a chosen phase (`every(1).seconds` runs a second after "
             "it is added, then a second after each run ends), so its aligned first fire is set through each "
             "job's `next_run` and it has no spread case. `bare`: the physical limit on asyncio, one "
             "`loop.call_at` handle per task re-armed a second later at each fire, starting an asyncio task for "
             "the async no-op; STS's ratio to it is the share of the limit it reaches. `/library`: as a library "
             "user runs it: the README's `AsyncTaskScheduler(Config())`, every default (the history keeps up to "
             "1,000 runs per task for 7 days, so it grows all run), and no gc.freeze() in any system; without it, "
             "STS keeps only the window's runs. longest full GC ms: the longest generation-2 collection from the "
             "end of loading to the end of the run (gc.callbacks).",
    ),
    Workload(
        "W3", "Queue throughput over Redis (one producer, one worker process)", "workloads.w3_queue",
        ["sts@c1", "sts@c8", "bare@c1", "bare@c8", "celery@c1", "celery@c8", "rq@c1", "dramatiq@c1",
         "dramatiq@c8", "huey@c1", "huey@c8", "arq@c1", "arq@c8", "taskiq@c1", "taskiq@c8"],
        [Metric("runs_per_s", "runs/s", True), Metric("enqueue_s", "enqueue s", False),
         Metric("drain_s", "drain s", False)],
        {"bare@c1": "sts@c1", "bare@c8": "sts@c8", "celery@c1": "sts@c1", "celery@c8": "sts@c8",
         "rq@c1": "sts@c1", "dramatiq@c1": "sts@c1", "dramatiq@c8": "sts@c8", "huey@c1": "sts@c1",
         "huey@c8": "sts@c8", "arq@c1": "sts@c1", "arq@c8": "sts@c8", "taskiq@c1": "sts@c1",
         "taskiq@c8": "sts@c8"},
        args=["--runs", "20000"], quick_args=["--runs", "3000"],
        note="20,000 no-op runs (--quick: 3,000) from one producer (the bench process) through ONE worker process "
             "at concurrency 1 (@c1) and 8 (@c8); each system gets its own fresh redis-server on loopback (no "
             "persistence). enqueue: time to enqueue all N, one call after the other; drain: from the first "
             "enqueue until the last run has executed; runs/s = N / drain. The end is detected alike for all: each "
             "no-op counts in the worker process and the Nth pushes one item onto a Redis list the producer BLPOPs. "
             "STS: one stored task, `fire_now()` N times from a process running only the scheduler role; `sts "
             "worker --concurrency C`; every run recorded (queued, running, outcome), acked after its outcome is "
             "recorded, at-least-once. bare: the physical limit with no framework: pipelined XADD, a worker doing "
             "XREADGROUP COUNT C and one XACK per batch, nothing recorded. Celery: --pool solo (c1) or --pool "
             "threads -c 8, delay(). RQ: SimpleWorker, one job at a time (it has no c8), enqueue_many. Dramatiq: "
             "--processes 1 --threads C, send(). Huey: -w C -k thread, at-most-once (no ack). arq: max_jobs C with "
             "poll_delay 0 (a busy poll: the default 0.5 s gives arq@c1 2 runs/s). Taskiq: RedisStreamBroker "
             "(acked), --workers 1 --max-async-tasks C. Producer, worker and redis-server share the cores.",
    ),
    Workload(
        "W4", "Distributed periodic firing over Redis (2 schedulers, 2 workers)", "workloads.w4_distributed",
        ["sts", "celery-beat", "rq-scheduler", "taskiq-scheduler", "arq-cron"],
        [Metric("p50_ms", "p50 ms late", False), Metric("p99_ms", "p99 ms late", False),
         Metric("max_ms", "max ms late", False), Metric("missed", "missed fires", False),
         Metric("duplicates", "duplicate fires", False)],
        {"celery-beat": "sts", "rq-scheduler": "sts", "taskiq-scheduler": "sts", "arq-cron": "sts"},
        args=["--seconds", "20"], quick_args=["--seconds", "8"],
        note="100 tasks every second on a fresh loopback redis-server, two scheduler and two worker processes per "
             "system (arq: cron runs inside its two workers), for 20 s (--quick: 8); the first 2 s are not "
             "judged. Late: function entry minus the second the fire was meant for (STS and arq report it; for "
             "the others, the whole second at or before start + 50 ms). missed: (task, second) slots with no "
             "fire; duplicate: fires beyond the first for a slot. Celery beat and the Taskiq scheduler have no "
             "coordination between schedulers (their docs say to run one): two double every fire. rq-scheduler: "
             "a lock lets one enqueue at a time; SimpleWorker. STS: `sts scheduler` twice on the same task file, "
             "`sts worker` twice.",
    ),
    Workload(
        "W5", "Scale: 1,000 to 1,000,000 scheduled tasks", "workloads.w5_scale",
        [f"{system}@{tasks}" for system in ("sts-memory", "apscheduler3-memory", "sts-redis", "apscheduler3-redis")
         for tasks in (1000, 100000, 1000000) if not (system == "apscheduler3-redis" and tasks == 1000000)],
        [Metric("add_us_per_task", "add µs/task", False), Metric("add_one_ms", "add 1 more ms", False),
         Metric("rss_bytes_per_task", "RSS B/task", False), Metric("redis_bytes_per_task", "Redis B/task", False),
         Metric("fire_us", "CPU-µs per fire", False)],
        {f"apscheduler3-{backend}@{tasks}": f"sts-{backend}@{tasks}"
         for backend in ("memory", "redis") for tasks in (1000, 100000, 1000000)
         if not (backend == "redis" and tasks == 1000000)},
        args=[], quick_args=["--max", "100000"],
        note="N interval tasks (every hour, first fires 2-3 h ahead, phases spread over the hour, added in a "
             "scrambled order) plus 500 probe tasks, in one process. add µs/task: building and adding the N (STS: "
             "add_tasks in calls of 100,000; APScheduler 3: add_job each, its scheduler started paused); add 1 "
             "more: one more add_tasks / add_job with N stored. RSS B/task: growth of the process's VmRSS (after "
             "gc.collect()) over the adding, per task; with Redis it is what the process keeps besides Redis (STS: "
             "a compiled plan per task; APScheduler: nothing). Redis B/task: growth of used_memory per task. "
             "CPU-µs per fire: with none of the N due, the 500 probes are made due at one instant 0.3 s ahead (the "
             "store's set_next_fire; modify_job) and the process's CPU from then until all have run (STS: and "
             "their runs are recorded) is divided by 500, median of 9 rounds; flat across N means firing scans no "
             "list of all tasks. STS: AsyncTaskScheduler, both roles, an async function. APScheduler 3: "
             "AsyncIOScheduler, MemoryJobStore / RedisJobStore; apscheduler3-redis@1000000 is left out for time "
             "(about 200 s a repetition, flat from 100,000 already). A fresh loopback redis-server per Redis run. "
             "--quick skips the 1,000,000 systems.",
    ),
    Workload(
        "W6", "Start-up (every plugin installed)", "workloads.w6_startup",
        ["sts --help", "sts plugins", "celery --help", "rq --help", "dramatiq --help"],
        [Metric("ms", "wall ms", False)],
        {"celery --help": "sts --help", "rq --help": "sts --help", "dramatiq --help": "sts --help"},
        note="Wall time of one command, a new process each time, in bench/.venv.",
    ),
]


def ensure_environment() -> None:
    """Create or refresh bench/.venv when requirements.txt changed since it was built."""
    stamp = VENV / "requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if PYTHON.exists() and stamp.exists() and stamp.read_text() == wanted:
        return
    print(f"bench: building {VENV.relative_to(ROOT)} (STS, every plugin and the peers)", flush=True)
    venv.create(VENV, with_pip=True, clear=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], cwd=ROOT, check=True)
    stamp.write_text(wanted)


def versions() -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys; out = {}\n"
            "for name in sys.argv[1:]:\n"
            "    try: out[name] = m.version(name)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    found = subprocess.run([str(PYTHON), "-c", code, *PEER_PACKAGES], capture_output=True, text=True, check=True)
    return json.loads(found.stdout)


def machine() -> dict[str, object]:
    model = ""
    with contextlib.suppress(OSError, StopIteration):
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "system": platform.platform()}


def run_once(workload: Workload, system: str, quick: bool) -> tuple[dict[str, float], list[str]]:
    command = [str(PYTHON), "-m", workload.module, system, *(workload.quick_args if quick else workload.args)]
    done = subprocess.run(command, cwd=BENCH, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{workload.name} {system} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), command


def run_workload(workload: Workload, reps: int, quick: bool) -> dict[str, object]:
    systems: dict[str, object] = {}
    for system in workload.systems:
        samples = []
        command: list[str] = []
        try:
            for _ in range(reps):
                sample, command = run_once(workload, system, quick)
                if "unsupported" in sample:  # the system cannot do this workload; the report says why
                    raise RuntimeError(f"unsupported: {sample['unsupported']}")
                samples.append(sample)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
            # One system failing must not cost the whole run: the report shows why it has no numbers.
            reason = str(exc).strip().splitlines()
            print(f"bench: {workload.name} {system}: no result: {reason[-1] if reason else exc!r}", flush=True)
            systems[system] = {"samples": samples, "error": "\n".join(reason[-12:])}
            continue
        summary = {}
        for metric in workload.metrics:
            values = [sample[metric.key] for sample in samples]
            summary[metric.key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        shown = " ".join(str(part) for part in command).replace(str(ROOT) + "/", "")
        systems[system] = {"samples": samples, "summary": summary, "command": shown}
        print(f"bench: {workload.name} {system}: " + ", ".join(
            f"{metric.label} {summary[metric.key]['median']:,.1f}" for metric in workload.metrics), flush=True)
    return {"workload": workload.name, "title": workload.title, "note": workload.note, "reps": reps,
            "quick": quick, "systems": systems}


def ratio(workload: Workload, result: dict, peer: str, metric: Metric) -> str:
    """STS's ratio to ``peer`` on ``metric`` ("2.00x": STS twice as good), or both values where one is 0."""
    if "summary" not in result["systems"][workload.compare[peer]] or "summary" not in result["systems"][peer]:
        return "-"
    sts = result["systems"][workload.compare[peer]]["summary"][metric.key]["median"]
    other = result["systems"][peer]["summary"][metric.key]["median"]
    if sts == 0 or other == 0:
        return "equal" if sts == other else f"{sts:,.0f} vs {other:,.0f}"
    return f"{sts / other if metric.higher_is_better else other / sts:.2f}x"


def write_report(results: list[tuple[Workload, dict]], info: dict[str, object]) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Produced by `python3 bench/run.py` on the machine below; raw numbers, exact commands and versions are in",
        "[`bench/results/`](bench/results). Each number is the median of the repetitions, with min-max. A ratio",
        "above 1 means STS does better than the peer it is compared with (more runs/s, fewer CPU-µs, less time).",
        "",
        f"- Machine: {info['machine']['cpu']}, {info['machine']['cores']} cores, Python {info['machine']['python']}, "
        f"{info['machine']['system']}",
        "- Versions: " + ", ".join(f"{name} {version}" for name, version in sorted(info["versions"].items())),
        "",
    ]
    for workload, result in results:
        when = (f"{result['reps']} repetition(s){' (--quick)' if result.get('quick') else ''}, "
                f"run {result.get('started', '?')} UTC.")
        lines += [f"## {workload.name}: {workload.title}", "", f"{workload.note} {when}", ""]
        header = "| system | " + " | ".join(metric.label for metric in workload.metrics) + " | STS's ratio |"
        lines += [header, "|" + "---|" * (len(workload.metrics) + 2)]
        for system in workload.systems:
            entry = result["systems"].get(system, {"error": "not run"})
            if "summary" not in entry:
                why = entry["error"].splitlines()[-1] if entry.get("error") else "no result"
                lines.append(f"| `{system}` | " + " | ".join("-" for _ in workload.metrics) + f" | {why} |")
                continue
            summary = entry["summary"]
            cells = [f"{summary[m.key]['median']:,.1f} ({summary[m.key]['min']:,.1f}-{summary[m.key]['max']:,.1f})"
                     for m in workload.metrics]
            ratios = ("; ".join(f"{ratio(workload, result, system, m)} {m.label}" for m in workload.metrics)
                      + f" (vs `{workload.compare[system]}`)" if system in workload.compare else "")
            lines.append(f"| `{system}` | " + " | ".join(cells) + f" | {ratios} |")
        lines += ["", "Commands:", ""]
        lines += [f"- `{result['systems'][system]['command']}`" for system in workload.systems
                  if result["systems"].get(system, {}).get("command")]
        lines.append("")
    REPORT.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repetition of smaller workloads")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per system (default 3, --quick 1)")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W6")
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    chosen = [w for w in WORKLOADS if not args.only or w.name in args.only.upper().split(",")]
    ensure_environment()
    info = {"started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), "reps": reps, "quick": args.quick,
            "machine": machine(), "versions": versions()}
    RESULTS.mkdir(exist_ok=True)
    began = time.perf_counter()
    for workload in chosen:
        result = run_workload(workload, reps, args.quick)
        (RESULTS / f"{workload.name.lower()}.json").write_text(json.dumps({**info, **result}, indent=2) + "\n")
    # The report shows every workload with results, those of earlier runs (--only) included.
    results = [(w, json.loads((RESULTS / f"{w.name.lower()}.json").read_text())) for w in WORKLOADS
               if (RESULTS / f"{w.name.lower()}.json").exists()]
    write_report(results, info)
    print(f"bench: wrote {REPORT.relative_to(ROOT)} and {RESULTS.relative_to(ROOT)}/ in "
          f"{time.perf_counter() - began:.0f}s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
