"""Helpers for the multi-process fault tests: start and stop ``sts`` processes, write their config
and task files, wait for conditions with timeouts, and read the ledger and STS's run records.

A :class:`Cluster` owns everything one test starts; :meth:`Cluster.stop_all` (called from the
test's ``finally``) continues stopped processes, sends SIGTERM, waits up to 5 s and SIGKILLs
what is left. Failures raised by :meth:`Cluster.wait_until` carry the counts the caller
describes plus the tail of every process's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import fault_jobs
import redis

from sts.plugin import Run, RunState
from sts_core.testing import sts_command
from sts_redis.testing import die_with_parent_preexec

TESTS_DIR = Path(__file__).resolve().parent


class Execution(NamedTuple):
    """One row of the ledger: one execution of a task function."""

    seq: int
    task: str
    fire_id: str | None
    run_id: str
    attempt: int
    pid: int
    scheduled_us: int
    started: float
    ended: float | None


class StsProcess:
    """One ``sts`` command in its own session, output appended to ``log_path`` (kept across restarts)."""

    def __init__(self, name: str, args: Sequence[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.args = list(args)
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.pids: list[int] = []
        self.stopped_by_signal = False  # SIGSTOPped and not continued yet

    def start(self) -> StsProcess:
        """Start (or start again after it died) the command."""
        if self.alive:
            raise RuntimeError(f"{self.name} is running already (pid {self.pid})")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== test: start #{self.starts} of {self.name}: {' '.join(self.args)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [*sts_command(), *self.args],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal is for pytest
                preexec_fn=die_with_parent_preexec(),
            )
        self.pids.append(self.process.pid)
        self.stopped_by_signal = False
        return self

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def send(self, signum: int) -> None:
        """Send ``signum`` to the process (nothing when it has exited)."""
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)
            if signum == signal.SIGSTOP:
                self.stopped_by_signal = True
            elif signum == signal.SIGCONT:
                self.stopped_by_signal = False

    def kill(self) -> None:
        """SIGKILL, as in a crash, and reap it."""
        if self.process is None:
            return
        self.send(signal.SIGKILL)
        self.process.wait(10)
        self.stopped_by_signal = False

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for it to exit; its exit code, or None while it runs."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def describe(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        if self.stopped_by_signal:
            state = "SIGSTOPped"
        return f"{self.name} (pid {self.pid}, {state}, started {self.starts}x)"


class Cluster:
    """The processes, files, ledger and Redis keys of one fault test (fresh ``prefix`` per test)."""

    def __init__(self, workdir: Path, url: str, prefix: str) -> None:
        self.workdir = workdir
        self.url = url
        self.prefix = prefix
        self.ledger_path = workdir / "ledger.sqlite3"
        fault_jobs.create_ledger(str(self.ledger_path))
        self.processes: list[StsProcess] = []
        self.env = {key: value for key, value in os.environ.items() if not key.upper().startswith("STS_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env[fault_jobs.LEDGER_ENV] = str(self.ledger_path)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
        self._ledger_conn: Any = None
        self._redis: redis.Redis | None = None

    # -- files --------------------------------------------------------------------------------------

    def config(
        self,
        name: str = "sts.yaml",
        *,
        lease: str = "2s",
        grace: str = "2s",
        max_redeliveries: int = 3,
        poll_interval: str = "1s",
        concurrency: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write a config file for processes of this cluster (JSON is YAML too); ``extra`` is
        merged into it, section by section (``{"broker": "rabbitmq", "rabbitmq": {...}}``)."""
        data: dict[str, Any] = {
            "scheduler_backend": "redis",
            "redis": {"url": self.url, "key_prefix": self.prefix, "lease_time": lease, "poll_interval": poll_interval},
            "executor": {"max_redeliveries": max_redeliveries},
            "scheduler": {"shutdown_grace": grace},
            "logging": {"loglevel": "INFO"},
        }
        if concurrency is not None:
            data["executor"]["concurrency"] = concurrency
        if extra:
            _merge(data, extra)
        path = self.workdir / name
        path.write_text(json.dumps(data, indent=2))
        return path

    def task_file(self, tasks: Iterable[dict[str, Any]], name: str = "tasks.json") -> Path:
        """Write a task file (JSON) with ``tasks``."""
        path = self.workdir / name
        path.write_text(json.dumps({"tasks": list(tasks)}))
        return path

    # -- processes -----------------------------------------------------------------------------------

    def start(self, name: str, *args: str) -> StsProcess:
        """Start ``sts ARGS`` as a new process named ``name`` (its log is ``<name>.log``)."""
        process = StsProcess(name, args, cwd=self.workdir, env=self.env, log_path=self.workdir / f"{name}.log")
        self.processes.append(process)
        return process.start()

    def wait_started(self, *processes: StsProcess, timeout: float = 30.0) -> None:
        """Wait until each process logged ``STS started`` since its latest start."""

        def started(process: StsProcess) -> bool:
            text = process.log_text()
            marker = text.rfind(f"=== test: start #{process.starts} ")
            return "STS started" in text[marker:]

        self.wait_until(lambda: all(started(p) for p in processes), timeout,
                        f"{', '.join(p.name for p in processes)} to log 'STS started'")

    def stop_all(self) -> None:
        """Continue stopped processes, SIGTERM all, wait up to 5 s, SIGKILL what is left."""
        for process in self.processes:
            process.send(signal.SIGCONT)
            process.send(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for process in self.processes:
            process.wait(max(deadline - time.monotonic(), 0.01))
        for process in self.processes:
            if process.alive:
                process.kill()
        self.close()

    def close(self) -> None:
        if self._ledger_conn is not None:
            self._ledger_conn.close()
            self._ledger_conn = None
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    def describe(self, lines: int = 25) -> str:
        """The state and log tail of every process."""
        parts = []
        for process in self.processes:
            parts.append(f"--- {process.describe()}, log {process.log_path}:\n{process.tail(lines)}")
        return "\n".join(parts)

    # -- waiting ---------------------------------------------------------------------------------------

    def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float,
        what: str,
        *,
        details: Callable[[], str] | None = None,
        each: Callable[[], None] | None = None,
        interval: float = 0.15,
    ) -> float:
        """Poll ``condition`` until it holds (return the seconds waited) or fail after ``timeout``
        seconds with ``details()`` and every process's log tail. ``each`` runs before every poll
        (a supervisor restarting processes, say)."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            if each is not None:
                each()
            if condition():
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                info = details() if details is not None else ""
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; {info}\n{self.describe()}")
            time.sleep(interval)

    # -- the ledger and STS's records ----------------------------------------------------------------

    def ledger(self) -> list[Execution]:
        """Every execution recorded so far, in insertion order."""
        if self._ledger_conn is None:
            self._ledger_conn = fault_jobs.connect(str(self.ledger_path))
        rows = self._ledger_conn.execute(
            "SELECT seq, task, fire_id, run_id, attempt, pid, scheduled_us, started, ended FROM executions ORDER BY seq"
        ).fetchall()
        return [Execution(*row) for row in rows]

    def executions(self) -> int:
        if self._ledger_conn is None:
            self._ledger_conn = fault_jobs.connect(str(self.ledger_path))
        return int(self._ledger_conn.execute("SELECT COUNT(*) FROM executions").fetchone()[0])

    @property
    def redis(self) -> redis.Redis:
        """A synchronous client for reading keys directly."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.url, socket_timeout=10)
        return self._redis

    def records(self) -> list[Run]:
        """Every run record STS holds under this prefix (read straight from ``<prefix>:runs``)."""
        stored = self.redis.hgetall(f"{self.prefix}:runs")
        return [Run.from_dict(json.loads(value)) for value in stored.values()]

    def store_runs(self, limit: int = 100_000) -> list[Run]:
        """The run records as ``RedisStore.list_runs`` lists them (newest first)."""
        from sts.plugin import SystemClock
        from sts_core.testing import StubConfig
        from sts_redis.backend import build_backend

        async def read() -> list[Run]:
            backend = build_backend(StubConfig({"redis": {"url": self.url, "key_prefix": self.prefix}}), SystemClock())
            await backend.store.open()
            try:
                return await backend.store.list_runs(limit=limit)
            finally:
                await backend.store.close()

        return asyncio.run(read())


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """Merge ``extra`` into ``into`` in place: nested dicts key by key, anything else replaced."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def by_fire(executions: Iterable[Execution]) -> dict[str, list[Execution]]:
    """Executions grouped by fire id."""
    grouped: dict[str, list[Execution]] = {}
    for execution in executions:
        grouped.setdefault(execution.fire_id or execution.run_id, []).append(execution)
    return grouped


def records_by_fire(records: Iterable[Run]) -> dict[str, list[Run]]:
    """Run records grouped by fire id."""
    grouped: dict[str, list[Run]] = {}
    for run in records:
        grouped.setdefault(run.fire_id or run.id, []).append(run)
    return grouped


def state_counts(records: Iterable[Run]) -> dict[str, int]:
    """How many records are in each state."""
    counts: dict[str, int] = {}
    for run in records:
        counts[run.state.value] = counts.get(run.state.value, 0) + 1
    return dict(sorted(counts.items()))


def unmatched_repeats(executed: dict[str, list[Execution]], recorded: dict[str, list[Run]]) -> dict[str, Any]:
    """Fires executed more than once without a lost or duplicate record to say so."""
    return {
        fire: [(e.run_id, e.pid) for e in runs]
        for fire, runs in executed.items()
        if len(runs) > 1
        and not any(r.state in (RunState.LOST, RunState.DUPLICATE) for r in recorded.get(fire, []))
    }


def double_successes(recorded: dict[str, list[Run]]) -> dict[str, list[str]]:
    """Fires recorded succeeded more than once."""
    return {
        fire: [r.id for r in runs] for fire, runs in recorded.items()
        if sum(r.state is RunState.SUCCEEDED for r in runs) > 1
    }

