"""Run the benchmarks: STS next to the libraries people would pick instead, on the same machine,
in the same run. Standard library only: it builds its own environment.

    python3 bench/run.py [--quick] [--only W1,W6] [--reps 3]

1. ``bench/.venv`` is created (again when ``bench/requirements.txt`` changes) holding STS with
   every plugin and the peers (APScheduler 3, schedule, Celery, RQ, Dramatiq, Huey, arq, Taskiq).
2. Every workload runs every system ``--reps`` times, each repetition in a fresh process
   (``bench/workloads/<workload>.py``). ``--quick`` runs one repetition of smaller workloads.
3. ``bench/results/<workload>.json`` gets the raw numbers, the machine, the versions and the
   exact commands; ``BENCHMARKS.md`` the tables: medians with min-max, and STS's ratio to each peer.

Workloads so far: W1 (engine throughput, memory, one process) and W6 (start-up). W2-W5 (firing
precision, queue throughput and distributed firing over Redis, scale) are still to come.
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
        for _ in range(reps):
            sample, command = run_once(workload, system, quick)
            samples.append(sample)
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


def ratio(workload: Workload, result: dict, peer: str, metric: Metric) -> float:
    sts = result["systems"][workload.compare[peer]]["summary"][metric.key]["median"]
    other = result["systems"][peer]["summary"][metric.key]["median"]
    return sts / other if metric.higher_is_better else other / sts


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
            summary = result["systems"][system]["summary"]
            cells = [f"{summary[m.key]['median']:,.1f} ({summary[m.key]['min']:,.1f}-{summary[m.key]['max']:,.1f})"
                     for m in workload.metrics]
            ratios = ("; ".join(f"{ratio(workload, result, system, m):.2f}x {m.label} vs {workload.compare[system]}"
                                for m in workload.metrics) if system in workload.compare else "")
            lines.append(f"| `{system}` | " + " | ".join(cells) + f" | {ratios} |")
        lines += ["", "Commands:", ""]
        lines += [f"- `{result['systems'][system]['command']}`" for system in workload.systems]
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
