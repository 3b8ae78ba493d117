"""W4 distributed periodic firing over Redis: 100 tasks every second, two schedulers, two workers.

    python -m workloads.w4_distributed SYSTEM [--seconds 20] [--tasks 100] [--warmup 2] [--keep]

Starts a fresh redis-server on loopback (no persistence; ``sts_redis.testing.RedisServer`` needs
pytest, which bench/.venv does not have), then SYSTEM's two scheduler and two worker processes
against it. Workers keep their library's default concurrency.

* ``sts``: two ``sts scheduler --config sts.yaml tasks.yaml`` (the same command twice: the
  README's hot standby) and two ``sts worker --concurrency 100`` (the default); each task has
  ``every: 1s`` and a ``start`` on a whole second, so its fires are on whole seconds.
* ``celery-beat``: two ``celery beat``, although Celery's docs say to run exactly one: nothing
  stops both from firing, and that is measured. Two ``celery worker`` (prefork, one child per
  core). Each entry is ``schedule(timedelta(seconds=1), relative=True)``: ``relative`` rounds
  each next run down to the whole second, without it fires drift by their own lateness.
  Celery 5.7's Redis transport wants redis-py >= 6.1, arq and taskiq-redis want < 6: the
  workload stops with that message when the installed redis-py is refused.
* ``rq-scheduler``: two rq-scheduler loops (``Scheduler.run``, polling every second; a Redis
  lock lets one enqueue at a time) started 10 ms after a whole second (the ``rqscheduler``
  command would poll at a random phase), and two ``rq worker --worker-class
  rq.worker.SimpleWorker``: the default worker forks per job and two of them ran only about
  90 jobs/s here, so the backlog, not the scheduler, would be measured. Each job is
  ``schedule(..., interval=1, repeat=None)`` from a whole second; rq-scheduler stores whole
  seconds, so the fires stay on them.
* ``taskiq-scheduler``: two ``taskiq scheduler`` (no coordination between them; the docs say to
  run one) with ``LabelScheduleSource`` and ``{"interval": 1}`` schedules (its loop ticks on
  whole seconds; cron schedules go down to minutes only), and two ``taskiq worker --workers 1``
  on taskiq-redis's ``ListQueueBroker``.
* ``arq-cron``: arq has no scheduler process: each worker enqueues the cron jobs itself, one
  job per fire thanks to a unique job id. Two ``arq`` workers with ``cron(...,
  second=set(range(60)))`` and nothing else; a worker polls its queue every 0.5 s (default).

Each execution records its task, its start (``time.time()`` at function entry) and, where the
library says so, the time it was meant for (STS: the run's ``scheduled_for``; arq: the unique
cron job id). Celery, rq-scheduler and Taskiq do not say: there one rule gives it, the whole
second at or before ``start + 50 ms``. So a fire up to 50 ms early counts as early, and one
950 ms late or more counts for the next second (its own second is then missed, and the next
one has a duplicate if it fired too).

The clock starts at T0, a whole second ``--lead`` seconds after launch. The slots measured are
the whole seconds T0 + warmup ... T0 + seconds - 1, one fire expected per task and slot; fires
are collected until ``--grace`` seconds after the window. ``missed`` counts slots without a
fire, ``duplicates`` the fires beyond the first for a slot, and the lateness (start minus
intended time) is taken over every fire in those slots, duplicates included. Prints
``{"p50_ms", "p99_ms", "max_ms", "missed", "duplicates", "fires", "expected"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STS_CONCURRENCY = 100  # executor.concurrency, the default; the peers keep their defaults too
EARLY = 0.05  # a fire up to this early is attributed to the coming second


@dataclass
class Setup:
    """One run of the workload: its server, directory, first slot, and the processes it started."""

    url: str
    workdir: Path
    first: int  # T0, epoch seconds
    tasks: int
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    @property
    def records(self) -> Path:
        return self.workdir / "records"

    def env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path, "W4_REDIS_URL": self.url, "W4_RECORDS": str(self.records),
                "W4_TASKS": str(self.tasks), "PYTHONUNBUFFERED": "1"}

    def launch(self, label: str, command: list[str]) -> None:
        """Start ``command`` in its own process group (so its pool children are stopped with it)."""
        log = open(self.workdir / f"{label}.log", "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(command, cwd=BENCH, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent_preexec)
        log.close()
        self.procs.append((label, proc))

    def check_alive(self) -> None:
        """Raise, with the log's tail, when a process exited early."""
        for label, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.workdir / f"{label}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{label} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM each process group started, SIGKILL what is left after 10 s."""
        for _, proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(deadline - time.monotonic(), 0.1))
        for _, proc in self.procs:
            _signal_group(proc, signal.SIGKILL)  # pool children, or a process that ignored SIGTERM
            proc.wait()


def die_with_parent_preexec() -> None:
    """In the child before exec: SIGKILL it when this process dies (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the group this process leads (start_new_session)


# --- the systems ------------------------------------------------------------------------------------


def start_sts(setup: Setup) -> None:
    import yaml

    config = {"scheduler_backend": "redis", "redis": {"url": setup.url, "key_prefix": "w4"},
              "logging": {"loglevel": "WARNING"}, "history": {"max_runs_per_task": 20}}
    start = datetime.fromtimestamp(setup.first, UTC).isoformat()
    tasks = [{"name": name, "function": "workloads.w4_peers:sts_tick", "every": "1s", "start": start}
             for name in _names(setup.tasks)]
    (setup.workdir / "sts.yaml").write_text(yaml.safe_dump(config))
    (setup.workdir / "tasks.yaml").write_text(yaml.safe_dump({"tasks": tasks}))
    sts, cfg, taskfile = str(BIN / "sts"), str(setup.workdir / "sts.yaml"), str(setup.workdir / "tasks.yaml")
    for i in (1, 2):
        setup.launch(f"scheduler{i}", [sts, "scheduler", "--config", cfg, taskfile])
    for i in (1, 2):
        setup.launch(f"worker{i}", [sts, "worker", "--config", cfg, "--concurrency", str(STS_CONCURRENCY)])


def check_celery_redis(url: str) -> None:
    """Fail early, and say why, when Celery's Redis transport refuses the installed redis-py."""
    from kombu import Connection
    from kombu.exceptions import VersionMismatch

    try:
        with Connection(url) as connection:
            connection.default_channel  # noqa: B018 - creating the channel makes the client
    except VersionMismatch as exc:
        raise SystemExit(f"celery-beat: {exc}. (arq 0.28 and taskiq-redis 1.0.9 need redis-py < 6.) Put a newer "
                         f"redis-py first on PYTHONPATH for this system, or a kombu < 5.6 in bench/.venv.") from None


def start_celery(setup: Setup) -> None:
    check_celery_redis(setup.url)
    celery = [str(BIN / "celery"), "-A", "workloads.w4_peers:celery_app"]
    for i in (1, 2):
        setup.launch(f"beat{i}", [*celery, "beat", "--loglevel", "WARNING", "-s", str(setup.workdir / f"beat{i}"),
                                  "--pidfile", str(setup.workdir / f"beat{i}.pid")])
    for i in (1, 2):
        setup.launch(f"worker{i}", [*celery, "worker", "--loglevel", "WARNING", "-n", f"w4-{i}@localhost"])


def start_rq(setup: Setup) -> None:
    from workloads.w4_peers import schedule_rq

    os.environ["W4_TASKS"] = str(setup.tasks)
    schedule_rq(setup.url, setup.first)
    for i in (1, 2):
        setup.launch(f"scheduler{i}", [sys.executable, "-m", "workloads.w4_peers", "rq-scheduler", setup.url])
    for i in (1, 2):
        setup.launch(f"worker{i}", [str(BIN / "rq"), "worker", "--url", setup.url, "--path", str(BENCH),
                                    "--logging_level", "WARNING", "--name", f"w4-{i}",
                                    "--worker-class", "rq.worker.SimpleWorker"])


def start_taskiq(setup: Setup) -> None:
    taskiq = str(BIN / "taskiq")
    for i in (1, 2):
        setup.launch(f"scheduler{i}", [taskiq, "scheduler", "workloads.w4_peers:taskiq_scheduler",
                                       "--log-level", "WARNING"])
    for i in (1, 2):
        setup.launch(f"worker{i}", [taskiq, "worker", "workloads.w4_peers:taskiq_broker", "--workers", "1",
                                    "--log-level", "WARNING"])


def start_arq(setup: Setup) -> None:
    for i in (1, 2):
        setup.launch(f"worker{i}", [str(BIN / "arq"), "workloads.w4_peers.ArqSettings"])


SYSTEMS: dict[str, Callable[[Setup], None]] = {
    "sts": start_sts,
    "celery-beat": start_celery,
    "rq-scheduler": start_rq,
    "taskiq-scheduler": start_taskiq,
    "arq-cron": start_arq,
}


def _names(count: int) -> list[str]:
    return [f"t{i:03d}" for i in range(count)]


# --- counting ---------------------------------------------------------------------------------------


def read_records(directory: Path) -> list[dict]:
    """Every execution recorded by every process."""
    return [json.loads(line) for path in sorted(directory.glob("*.jsonl"))
            for line in path.read_text().splitlines() if line]


def slot_of(record: dict) -> int:
    """The whole second the fire was intended for: the library's own time, else derived from the start."""
    if record["scheduled"] is not None:
        return round(record["scheduled"])
    return math.floor(record["start"] + EARLY)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    return sorted_values[max(math.ceil(p * len(sorted_values)) - 1, 0)]


def summarize(records: list[dict], names: list[str], slots: range) -> dict[str, float]:
    """Missed slots, duplicate fires and lateness over the slots measured."""
    fires = [(r["task"], slot_of(r), r["start"]) for r in records]
    fires = [(task, slot, start) for task, slot, start in fires if slot in slots]
    counts = Counter((task, slot) for task, slot, _ in fires)
    expected = [(task, slot) for task in names for slot in slots]
    missed = sum(1 for key in expected if counts[key] == 0)
    duplicates = sum(count - 1 for count in counts.values() if count > 1)
    late = sorted((start - slot) * 1000 for _, slot, start in fires)
    very_late = [r for r in records if r["scheduled"] is not None
                 and round(r["scheduled"]) != math.floor(r["start"] + EARLY) and round(r["scheduled"]) in slots]
    if very_late:
        print(f"w4: {len(very_late)} fire(s) later than {1 - EARLY:.2f}s: the rule for systems that do not say "
              f"when a fire was meant for would have put them in the next second", file=sys.stderr)
    return {"p50_ms": percentile(late, 0.50), "p99_ms": percentile(late, 0.99), "max_ms": late[-1] if late else 0.0,
            "missed": missed, "duplicates": duplicates, "fires": len(fires), "expected": len(expected)}


# --- the run ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 without persistence for the duration; yields its URL
    (``workdir`` is unused: the server keeps its own temporary directory)."""
    from sts_redis.testing import RedisServer

    with RedisServer() as server:
        yield server.url


def sleep_until(when: float) -> None:
    while (left := when - time.time()) > 0:
        time.sleep(min(left, 0.5))


def measure(system: str, seconds: int, tasks: int, warmup: int, lead: int, grace: float, keep: bool) -> dict:
    """Run ``system`` against a fresh redis-server and count its fires."""
    workdir = Path(tempfile.mkdtemp(prefix=f"w4-{system}-"))
    try:
        with redis_server(workdir) as url:
            setup = Setup(url, workdir, math.ceil(time.time()) + lead, tasks)
            setup.records.mkdir()
            try:
                SYSTEMS[system](setup)
                sleep_until(setup.first)
                setup.check_alive()
                sleep_until(setup.first + seconds + grace)
                setup.check_alive()
            finally:
                setup.stop()
        slots = range(setup.first + warmup, setup.first + seconds)
        result = summarize(read_records(setup.records), _names(tasks), slots)
        if keep:
            print(f"w4: logs and records kept in {workdir}", file=sys.stderr)
        return result
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("--seconds", type=int, default=20, help="length of the firing window from T0")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=2, help="first seconds of the window not measured")
    parser.add_argument("--lead", type=int, default=6, help="seconds from launch to T0, for start-up")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds after the window to collect late fires")
    parser.add_argument("--keep", action="store_true", help="keep the logs and records (path on stderr)")
    args = parser.parse_args()
    if args.seconds <= args.warmup:
        parser.error("--seconds must be greater than --warmup")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the processes started, on the way out
    result = measure(args.system, args.seconds, args.tasks, args.warmup, args.lead, args.grace, args.keep)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
