"""Fault tests of the Redis backend with real ``sts`` processes: workers and schedulers killed,
stopped and restarted, Redis restarted, memory after draining and at maxmemory.

Outcomes are counted from a ledger kept outside STS (``fault_jobs``: one SQLite row per
execution, written at the start of the task function) and compared with STS's own run
records. Each test prints a one-line summary of its counts (``pytest -s`` shows them).

Every process runs in its own session with a log file in the test's ``tmp_path`` (a failed wait
shows the tail of each); every process is stopped in a ``finally`` (SIGCONT, SIGTERM, 5 s,
SIGKILL). Each test uses a fresh key prefix or a private server. ``FAULT_SCHEDULER_SECONDS``
sets how long the two-scheduler test runs both schedulers (default 60 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import (
    Cluster,
    Execution,
    StsProcess,
    by_fire,
    double_successes,
    records_by_fire,
    state_counts,
    unmatched_repeats,
)

from sts.plugin import Run, RunState
from sts_redis.backend import RedisBackend
from sts_redis.testing import RedisServer

LEASE = "2s"
ServerFactory = Callable[..., RedisServer]


def _prefix(name: str) -> str:
    return f"fault-{name}-{secrets.token_hex(3)}"


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster on the shared server with a fresh key prefix; every process stopped afterwards."""
    group = Cluster(tmp_path, redis_url, _prefix(request.node.name.removeprefix("test_")[:20]))
    try:
        yield group
    finally:
        group.stop_all()


def _queue_depth(cluster: Cluster) -> int:
    r = cluster.redis
    p = cluster.prefix
    return int(r.llen(f"{p}:q:ready")) + int(r.zcard(f"{p}:q:delayed")) + int(r.zcard(f"{p}:q:leases"))


# -- 1. workers SIGKILLed while 2,000 runs drain ------------------------------------------------------------


@pytest.mark.timeout(180)
def test_sigkilled_worker_loses_no_run(cluster: Cluster) -> None:
    total = 2000
    config = cluster.config(lease=LEASE)
    tasks = cluster.task_file(
        # 20-50 ms each: the workers, not the (side-by-side) firing, set the pace, so the work lasts
        # long enough (about 3 s over 24 slots) for three kills to land on runs in flight.
        {"name": f"r{i:04d}", "function": "fault_jobs:record", "kwargs": {"seconds": 0.02, "jitter": 0.03}}
        for i in range(total)
    )
    workers = [cluster.start(f"worker{i}", "worker", "--config", str(config), "--concurrency", "8") for i in range(3)]
    cluster.wait_started(*workers)
    scheduler = cluster.start("scheduler", "scheduler", str(tasks), "--config", str(config))
    victim = workers[0]
    started = time.monotonic()

    def progress() -> str:
        records = cluster.records()
        return f"executions={cluster.executions()} records={state_counts(records)} depth={_queue_depth(cluster)}"

    kills = []
    for threshold in (300, 800, 1300):
        pid = victim.pid
        cluster.wait_until(
            lambda pid=pid, threshold=threshold: cluster.executions() >= threshold
            and sum(1 for e in cluster.ledger()[-200:] if e.pid == pid) >= 3,
            60, f"{threshold} executions, some by {victim.name} (pid {pid})", details=progress,
        )
        in_flight = [e for e in cluster.ledger() if e.pid == pid and e.ended is None]
        victim.kill()
        kills.append((pid, len(in_flight)))
        victim.start()
    cluster.wait_started(victim)

    def complete() -> bool:
        if len(by_fire(cluster.ledger())) < total or _queue_depth(cluster):
            return False
        succeeded = {r.fire_id for r in cluster.records() if r.state is RunState.SUCCEEDED}
        return len(succeeded) == total

    cluster.wait_until(complete, 90, f"all {total} runs to succeed", details=progress)
    elapsed = time.monotonic() - started
    assert scheduler.alive and all(w.alive for w in workers), cluster.describe()

    ledger = cluster.ledger()
    executed = by_fire(ledger)
    records = cluster.records()
    recorded = records_by_fire(records)
    states = state_counts(records)
    repeated = {fire: runs for fire, runs in executed.items() if len(runs) > 1}
    unmatched = unmatched_repeats(executed, recorded)
    double_success = double_successes(recorded)
    print(
        f"\nfaults[sigkill]: runs={total} executions={len(ledger)} fires_executed={len(executed)} "
        f"duplicates_in_ledger={len(ledger) - len(executed)} fires_repeated={len(repeated)} "
        f"lost_records={states.get('lost', 0)} duplicate_records={states.get('duplicate', 0)} "
        f"succeeded_records={states.get('succeeded', 0)} double_succeeded_fires={len(double_success)} "
        f"unmatched_repeats={len(unmatched)} kills(pid,in_flight)={kills} states={states} wall={elapsed:.1f}s"
    )
    assert len(executed) == total
    assert set(recorded) == set(executed)
    assert states.get("running", 0) == 0, states
    assert not unmatched, f"fires executed twice without a lost/duplicate record: {unmatched}"
    assert not double_success, f"fires recorded succeeded more than once: {double_success}"
    assert sum(n for _, n in kills) >= 1, f"no kill landed while runs were executing: {kills}"
    assert len(repeated) >= 1, "no kill caused a redelivery; the test did not test anything"


# -- 2. two schedulers: no duplicate and no missed fire; one killed, the other carries on ---------------------

#: How long both schedulers run side by side (the issue asks for 60 s; FAULT_SCHEDULER_SECONDS=20 for a quicker run).
BOTH_SCHEDULERS_SECONDS = float(os.environ.get("FAULT_SCHEDULER_SECONDS", "60"))
SECOND_US = 1_000_000


def _missing_fires(times: list[int], start_us: int, end_us: int) -> list[int]:
    """Fire times on the task's 1 s grid within [start_us, end_us] that are not in ``times``."""
    anchor = times[0]
    first = anchor + -(-(start_us - anchor) // SECOND_US) * SECOND_US
    seen = set(times)
    return [t for t in range(first, end_us + 1, SECOND_US) if t not in seen]


@pytest.mark.timeout(BOTH_SCHEDULERS_SECONDS + 100)
def test_two_schedulers_fire_each_interval_once(cluster: Cluster) -> None:
    count = 100
    config = cluster.config(lease=LEASE)
    task_file = cluster.task_file(
        {"name": f"tick{i:03d}", "function": "fault_jobs:record", "every": "1s", "kwargs": {"seconds": 0.005}}
        for i in range(count)
    )
    workers = [cluster.start(f"worker{i}", "worker", "--config", str(config), "--concurrency", "16") for i in range(2)]
    cluster.wait_started(*workers)
    first = cluster.start("scheduler1", "scheduler", str(task_file), "--config", str(config))
    cluster.wait_started(first)
    second = cluster.start("scheduler2", "scheduler", str(task_file), "--config", str(config))
    cluster.wait_started(second)
    both_from = time.time()
    time.sleep(BOTH_SCHEDULERS_SECONDS)
    assert all(p.alive for p in cluster.processes), cluster.describe()
    kill_wall = time.time()
    first.kill()
    after = 5.0

    def fires_after_kill() -> bool:
        latest: dict[str, int] = {}
        for e in cluster.ledger():
            latest[e.task] = max(latest.get(e.task, 0), e.scheduled_us)
        return len(latest) == count and min(latest.values()) >= (kill_wall + after) * SECOND_US

    cluster.wait_until(fires_after_kill, after + 15, f"every task to fire {after:g}s after the kill",
                       details=lambda: f"executions={cluster.executions()}")
    time.sleep(1.0)  # runs of the last fires finish
    ledger = cluster.ledger()
    records = cluster.records()
    executed = by_fire(ledger)
    recorded = records_by_fire(records)
    states = state_counts(records)
    per_task: dict[str, list[int]] = {}
    for e in ledger:
        per_task.setdefault(e.task, []).append(e.scheduled_us)

    # While both schedulers ran (one second of margin at each end for fires claimed meanwhile).
    window = (int((both_from + 1) * SECOND_US), int((kill_wall - 1) * SECOND_US))
    in_window = {fire: runs for fire, runs in executed.items() if window[0] <= runs[0].scheduled_us <= window[1]}
    duplicate_fires = {fire: [e.run_id for e in runs] for fire, runs in executed.items() if len(runs) > 1}
    multi_recorded = {fire: [(r.id, r.state.value) for r in runs] for fire, runs in recorded.items() if len(runs) > 1}
    missed = {task: _missing_fires(sorted(times), *window) for task, times in per_task.items()}
    missed = {task: times for task, times in missed.items() if times}
    # After the kill: the survivor fires every task with no gap over 2 s (one fire lost with the
    # killed scheduler would be a gap of exactly 2 s).
    gaps = {}
    for task, times in per_task.items():
        late = sorted(t for t in times if t >= (kill_wall - 2) * SECOND_US)
        gaps[task] = max((b - a for a, b in pairwise(late)), default=0) / SECOND_US
    lateness = sorted(e.started - e.scheduled_us / SECOND_US for e in ledger)
    p99 = lateness[int(len(lateness) * 0.99)]
    # Run ids start with a prefix of the process that dispatched them: who fired what.
    fired_by = Counter(runs[0].run_id.split("-")[0] for runs in in_window.values())
    print(
        f"\nfaults[two-schedulers]: tasks={count} both_for={BOTH_SCHEDULERS_SECONDS:g}s executions={len(ledger)} "
        f"fires={len(executed)} fires_in_window={len(in_window)} duplicate_fires_ledger={len(duplicate_fires)} "
        f"fires_with_several_records={len(multi_recorded)} missed_fires={sum(map(len, missed.values()))} "
        f"max_gap_after_kill={max(gaps.values()):.1f}s states={states} start_lateness_p99={p99 * 1000:.0f}ms "
        f"fires_in_window_by_scheduler={sorted(fired_by.values())}"
    )
    assert len(per_task) == count
    assert len(in_window) >= count * (BOTH_SCHEDULERS_SECONDS - 3)
    assert not duplicate_fires, duplicate_fires
    assert not multi_recorded, multi_recorded
    assert set(recorded) == set(executed), set(recorded) ^ set(executed)
    assert not missed, missed
    assert max(gaps.values()) <= 2.0, {task: gap for task, gap in gaps.items() if gap > 2.0}
    assert states == {"succeeded": len(ledger)}, states
    assert len(fired_by) == 2 and min(fired_by.values()) > 0, fired_by


# -- 3. a run longer than its lease; a worker stalled past its lease ----------------------------------------


def _process_of(cluster: Cluster, pid: int) -> StsProcess:
    return next(p for p in cluster.processes if pid in p.pids)


@pytest.mark.timeout(120)
def test_long_run_keeps_its_lease_and_stalled_worker_is_fenced(cluster: Cluster) -> None:
    config = cluster.config(lease=LEASE)
    workers = [cluster.start(f"worker{i}", "worker", "--config", str(config), "--concurrency", "4") for i in range(2)]
    cluster.wait_started(*workers)

    # A run of 5 s under a 2 s lease: the heartbeat renews the lease, so nobody else runs it.
    long_file = cluster.task_file([{"name": "long", "function": "fault_jobs:record", "kwargs": {"seconds": 5}}],
                                  "long.json")
    cluster.start("scheduler", "scheduler", str(long_file), "--config", str(config))

    def fire_records(task: str) -> list[Run]:
        return [r for r in cluster.records() if r.task_name == task]

    def long_details() -> str:
        executions = [e for e in cluster.ledger() if e.task == "long"]
        return f"ledger={executions} records={state_counts(fire_records('long'))}"

    cluster.wait_until(lambda: any(r.state is RunState.SUCCEEDED for r in fire_records("long")), 30,
                       "the long run to succeed", details=long_details)
    time.sleep(1.0)  # a late redelivery would show now
    long_runs = [e for e in cluster.ledger() if e.task == "long"]
    long_records = fire_records("long")
    long_states = state_counts(long_records)
    print(f"\nfaults[lease-renewal]: executions={len(long_runs)} records={long_states} "
          f"duration={(long_runs[0].ended or 0) - long_runs[0].started:.1f}s")
    assert len(long_runs) == 1, long_details()
    assert long_states == {"succeeded": 1}, long_details()
    assert _queue_depth(cluster) == 0

    # The same kind of run, its worker SIGSTOPped for 5 s: the other worker reclaims it once; the
    # stale worker's result is refused after SIGCONT and recorded as duplicate.
    stall_file = cluster.task_file([{"name": "stall", "function": "fault_jobs:record", "kwargs": {"seconds": 5}}],
                                   "stall.json")
    cluster.start("scheduler2", "scheduler", str(stall_file), "--config", str(config))

    def stall_runs() -> list[Execution]:
        return [e for e in cluster.ledger() if e.task == "stall"]

    def stall_details() -> str:
        return f"ledger={stall_runs()} records={[(r.id, r.state.value) for r in fire_records('stall')]}"

    cluster.wait_until(lambda: len(stall_runs()) >= 1, 30, "the stall run to start", details=stall_details)
    first = stall_runs()[0]
    stale = _process_of(cluster, first.pid)
    stale.send(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        cluster.wait_until(lambda: len(stall_runs()) >= 2, 10, "another worker to reclaim the stalled run",
                           details=stall_details)
        reclaimed_after = time.monotonic() - stopped_at
        time.sleep(max(5.0 - (time.monotonic() - stopped_at), 0.0))
    finally:
        stale.send(signal.SIGCONT)

    def settled() -> bool:
        states = sorted(r.state.value for r in fire_records("stall"))
        return states == ["duplicate", "succeeded"]

    cluster.wait_until(settled, 20, "a succeeded and a duplicate record of the stalled run", details=stall_details)
    time.sleep(1.0)
    executions = stall_runs()
    records = {r.id: r for r in fire_records("stall")}
    print(f"faults[sigstop]: executions={len(executions)} pids={[e.pid for e in executions]} "
          f"reclaimed_after={reclaimed_after:.1f}s records={[(i, r.state.value) for i, r in records.items()]}")
    assert len(executions) == 2, stall_details()
    second = executions[1]
    assert second.pid != first.pid
    assert second.run_id == f"{first.run_id}.d2" and second.attempt == first.attempt + 1
    assert records[first.run_id].state is RunState.DUPLICATE
    assert records[second.run_id].state is RunState.SUCCEEDED
    assert len(records) == 2
    assert reclaimed_after < 6.0
    assert "lost its lease" in stale.log_text()
    assert _queue_depth(cluster) == 0


# -- 4. a run that kills its worker every time ----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_poison_run_is_dead_lettered(cluster: Cluster) -> None:
    normal = 200
    max_redeliveries = 3
    config = cluster.config(lease=LEASE, max_redeliveries=max_redeliveries)
    # The normal runs are spread over ~10 s (delay triggers), so they keep flowing while the
    # poison run is delivered again and again; the poison run waits 0.2 s before killing its
    # worker. A run that was executing beside it when it did (on a loaded machine, often) runs
    # alone when delivered again, and succeeds: it is never dead-lettered with the poison run.
    tasks = [
        {"name": f"n{i:03d}", "function": "fault_jobs:record", "delay": round(0.05 * i, 2),
         "kwargs": {"seconds": 0.02, "jitter": 0.03}}
        for i in range(normal)
    ]
    tasks.insert(10, {"name": "poison", "function": "fault_jobs:suicide", "delay": 0.5, "kwargs": {"delay": 0.2}})
    task_file = cluster.task_file(tasks)
    workers = [cluster.start(f"worker{i}", "worker", "--config", str(config), "--concurrency", "8") for i in range(2)]
    cluster.wait_started(*workers)
    cluster.start("scheduler", "scheduler", str(task_file), "--config", str(config))
    started = time.monotonic()
    restarts: list[tuple[str, int | None, int | None]] = []

    def supervise() -> None:
        for worker in workers:
            if not worker.alive:
                restarts.append((worker.name, worker.pid, worker.returncode))
                worker.start()

    def dead_letters() -> list[dict]:
        return [json.loads(entry) for entry in cluster.redis.lrange(f"{cluster.prefix}:q:dead", 0, -1)]

    def progress() -> str:
        return (f"executions={cluster.executions()} records={state_counts(cluster.records())} "
                f"dead={dead_letters()} depth={_queue_depth(cluster)} restarts={restarts}")

    def done() -> bool:
        records = cluster.records()
        succeeded = {r.task_name for r in records if r.state is RunState.SUCCEEDED}
        poisoned = any(r.task_name == "poison" and r.state is RunState.POISON for r in records)
        return poisoned and len(succeeded) == normal and _queue_depth(cluster) == 0

    cluster.wait_until(done, 60, "the poison run to be dead-lettered and the others to succeed",
                       details=progress, each=supervise)
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    supervise()

    ledger = cluster.ledger()
    records = cluster.records()
    poison_runs = [e for e in ledger if e.task == "poison"]
    poison_records = {r.id: r for r in records if r.task_name == "poison"}
    normal_executed = by_fire(e for e in ledger if e.task != "poison")
    normal_recorded = records_by_fire(r for r in records if r.task_name != "poison")
    repeated = {fire: runs for fire, runs in normal_executed.items() if len(runs) > 1}
    unmatched = unmatched_repeats(normal_executed, normal_recorded)
    dead = dead_letters()
    states = state_counts(records)
    print(
        f"\nfaults[poison]: normal_runs={normal} normal_executions={sum(map(len, normal_executed.values()))} "
        f"normal_repeated={len(repeated)} poison_executions={len(poison_runs)} "
        f"poison_records={state_counts(poison_records.values())} dead_letters={len(dead)} "
        f"worker_restarts={len(restarts)} states={states} wall={elapsed:.1f}s"
    )
    # Executed once beside other runs, then alone max_redeliveries + 1 times, each loss a strike.
    executions = 2 + max_redeliveries
    assert len(poison_runs) == executions, progress()
    original = poison_runs[0].run_id
    assert [e.run_id for e in poison_runs] == [original] + [f"{original}.d{n}" for n in range(2, 1 + executions)]
    assert len({e.pid for e in poison_runs}) == len(poison_runs), "each poison execution ran in a new process"
    assert state_counts(poison_records.values()) == {"lost": executions, "poison": 1}
    assert [poison_records[e.run_id].isolated for e in poison_runs] == [False] + [True] * (executions - 1)
    poisoned = poison_records[f"{original}.d{1 + executions}"]
    assert poisoned.state is RunState.POISON and "max_redeliveries=3" in (poisoned.error_message or "")
    assert len(dead) == 1 and dead[0]["id"] == original, dead
    assert f"delivered {1 + executions} times" in dead[0]["reason"], dead
    assert dead[0]["payload"]["task_name"] == "poison"
    assert len(restarts) == executions, restarts
    assert all(code == -signal.SIGKILL for _, _, code in restarts), restarts
    assert not _beside_isolated(ledger, poison_runs[1:]), "a run executed beside the poison run running alone"
    assert len(normal_executed) == normal
    for fire, runs in normal_recorded.items():
        assert any(r.state is RunState.SUCCEEDED for r in runs), (fire, [(r.id, r.state.value) for r in runs])
        assert not any(r.state is RunState.POISON for r in runs), fire
    assert not unmatched, unmatched


@pytest.mark.timeout(120)
def test_runs_lost_beside_a_poison_run_are_not_dead_lettered(cluster: Cluster) -> None:
    # Issue 16, defect 2: six healthy runs due the same instant as a run that kills its worker,
    # all taken by one worker, each slower (1 s) than the poison run's kill (0.3 s after its
    # start): they are executing whenever it kills the worker, and share its lease end. They
    # must be charged nothing: each runs alone when delivered again, and succeeds.
    healthy = 6
    max_redeliveries = 1
    config = cluster.config(lease=LEASE, max_redeliveries=max_redeliveries)
    tasks = [{"name": "poison", "function": "fault_jobs:suicide", "delay": 1, "kwargs": {"delay": 0.3}}]
    tasks += [{"name": f"h{i}", "function": "fault_jobs:record", "delay": 1, "kwargs": {"seconds": 1.0}}
              for i in range(healthy)]
    task_file = cluster.task_file(tasks)
    workers = [cluster.start("worker0", "worker", "--config", str(config), "--concurrency", "8")]
    cluster.wait_started(*workers)
    cluster.start("scheduler", "scheduler", str(task_file), "--config", str(config))
    restarts: list[tuple[str, int | None, int | None]] = []

    def details() -> str:
        return (f"ledger={[(e.task, e.run_id, e.pid, e.ended is not None) for e in cluster.ledger()]} "
                f"records={sorted((r.id, r.state.value, r.isolated) for r in cluster.records())} "
                f"restarts={restarts}")

    cluster.wait_until(lambda: not workers[0].alive, 30, "the poison run to kill the only worker", details=details)
    workers.append(cluster.start("worker1", "worker", "--config", str(config), "--concurrency", "8"))

    def supervise() -> None:
        for worker in workers:
            if not worker.alive and worker.returncode is not None:
                restarts.append((worker.name, worker.pid, worker.returncode))
                worker.start()

    def settled() -> bool:
        records = cluster.records()
        over = {r.task_name for r in records if r.state in (RunState.SUCCEEDED, RunState.POISON)}
        return len(over) == 1 + healthy and _queue_depth(cluster) == 0

    cluster.wait_until(settled, 90, "every run to succeed or be dead-lettered", details=details, each=supervise)
    ledger = cluster.ledger()
    records = cluster.records()
    dead = [json.loads(entry) for entry in cluster.redis.lrange(f"{cluster.prefix}:q:dead", 0, -1)]
    names = ["poison"] + [f"h{i}" for i in range(healthy)]
    by_task = {name: [r for r in records if r.task_name == name] for name in names}
    collateral = [r for r in records if r.task_name != "poison" and r.state is RunState.LOST]
    poison_runs = [e for e in ledger if e.task == "poison"]
    print(f"\nfaults[poison-collateral]: healthy={healthy} executions={len(ledger)} states={state_counts(records)} "
          f"healthy_lost={len(collateral)} poison_executions={len(poison_runs)} dead={[d['id'] for d in dead]} "
          f"restarts={len(restarts)}")
    assert collateral, f"no healthy run was executing when the poison run killed its worker: {details()}"
    for i in range(healthy):
        states = [r.state for r in by_task[f"h{i}"]]
        assert RunState.SUCCEEDED in states and RunState.POISON not in states, details()
        assert [e for e in ledger if e.task == f"h{i}" and e.ended is not None], details()  # the ledger agrees
    assert state_counts(by_task["poison"]) == {"lost": 2 + max_redeliveries, "poison": 1}, details()
    assert len(dead) == 1 and dead[0]["payload"]["task_name"] == "poison", dead
    assert not _beside_isolated(ledger, poison_runs[1:]), "a run executed beside the poison run running alone"


def _beside_isolated(ledger: list[Execution], isolated: list[Execution]) -> list[tuple[Execution, Execution]]:
    """Executions on the worker of a run that ran alone (and killed that worker) while it ran:
    started after it on the same process, or started before it and not ended by then."""
    return [(run, e) for run in isolated for e in ledger if e.pid == run.pid and e is not run
            and (e.started > run.started or e.ended is None or e.ended > run.started)]


# -- 5. SIGTERM to a worker with runs in flight ---------------------------------------------------------------


@pytest.mark.timeout(120)
def test_sigterm_hands_interrupted_runs_back_at_once(cluster: Cluster) -> None:
    # A lease of 30 s: a run handed back at shutdown is taken again within seconds, long before
    # its lease would have expired.
    config = cluster.config(lease="30s", grace="2s")
    tasks = [{"name": f"short{i}", "function": "fault_jobs:record", "kwargs": {"seconds": 0.5}} for i in range(4)]
    tasks += [{"name": f"long{i}", "function": "fault_jobs:record", "kwargs": {"seconds": 10}} for i in range(4)]
    task_file = cluster.task_file(tasks)
    leaving = cluster.start("leaving", "worker", "--config", str(config), "--concurrency", "8")
    cluster.wait_started(leaving)
    cluster.start("scheduler", "scheduler", str(task_file), "--config", str(config))

    def details() -> str:
        return (f"ledger={[(e.task, e.run_id, e.pid) for e in cluster.ledger()]} "
                f"records={sorted((r.id, r.task_name, r.state.value) for r in cluster.records())}")

    cluster.wait_until(lambda: len({e.task for e in cluster.ledger() if e.pid == leaving.pid}) == 8, 30,
                       "the leaving worker to start all 8 runs", details=details)
    staying = cluster.start("staying", "worker", "--config", str(config), "--concurrency", "8")
    cluster.wait_started(staying)
    term_wall = time.time()
    leaving.send(signal.SIGTERM)
    exit_code = leaving.wait(15)
    left_after = time.time() - term_wall

    def long_taken_over() -> bool:
        return len({e.task for e in cluster.ledger() if e.pid == staying.pid and e.task.startswith("long")}) == 4

    cluster.wait_until(long_taken_over, 10, "the staying worker to take over the 4 long runs", details=details)

    def all_succeeded() -> bool:
        return len({r.task_name for r in cluster.records() if r.state is RunState.SUCCEEDED}) == 8

    cluster.wait_until(all_succeeded, 30, "all 8 runs to succeed", details=details)
    ledger = cluster.ledger()
    records = cluster.records()
    takeover = sorted(e.started - term_wall for e in ledger if e.pid == staying.pid)
    states = state_counts(records)
    print(
        f"\nfaults[sigterm]: executions={len(ledger)} records={states} leaving_exit={exit_code} "
        f"left_after={left_after:.1f}s redelivered_after={[round(t, 2) for t in takeover]}s (lease 30s)"
    )
    assert exit_code == 0, leaving.tail()
    assert left_after < 6.0
    for i in range(4):
        short = [r for r in records if r.task_name == f"short{i}"]
        assert [r.state for r in short] == [RunState.SUCCEEDED], details()
        assert [e.pid for e in ledger if e.task == f"short{i}"] == [leaving.pid]
        long = {r.id: r for r in records if r.task_name == f"long{i}"}
        runs = [e for e in ledger if e.task == f"long{i}"]
        assert [e.pid for e in runs] == [leaving.pid, staying.pid], details()
        assert long[runs[0].run_id].state is RunState.INTERRUPTED, details()
        assert long[runs[1].run_id].state is RunState.SUCCEEDED, details()
        assert len(long) == 2
    assert max(takeover) < 3.5, f"handed back runs were taken {takeover}s after SIGTERM"
    assert states == {"interrupted": 4, "succeeded": 8}
    assert _queue_depth(cluster) == 0

@pytest.mark.timeout(120)
def test_graceful_hand_backs_do_not_poison_a_run(cluster: Cluster) -> None:
    # Rolling restarts: each worker is stopped gracefully while the run executes and hands it
    # back; no worker is ever lost, so the run must not be poisoned (max_redeliveries 1 keeps
    # it short: the third delivery follows two hand-backs).
    config = cluster.config(lease="30s", grace="0.5s", max_redeliveries=1)
    task_file = cluster.task_file([{"name": "long", "function": "fault_jobs:record", "kwargs": {"seconds": 4}}])
    current = cluster.start("worker0", "worker", "--config", str(config))
    cluster.wait_started(current)
    cluster.start("scheduler", "scheduler", str(task_file), "--config", str(config))

    def details() -> str:
        return (f"ledger={[(e.run_id, e.pid) for e in cluster.ledger()]} "
                f"records={sorted((r.id, r.state.value, r.error_message) for r in cluster.records())}")

    for number in (1, 2):
        pid = current.pid
        cluster.wait_until(lambda pid=pid: any(e.pid == pid for e in cluster.ledger()), 15,
                           f"worker{number - 1} to start the run", details=details)
        successor = cluster.start(f"worker{number}", "worker", "--config", str(config))
        cluster.wait_started(successor)
        current.send(signal.SIGTERM)
        assert current.wait(10) == 0, current.tail()
        current = successor

    def settled() -> bool:
        return any(r.state in (RunState.SUCCEEDED, RunState.POISON) for r in cluster.records())

    cluster.wait_until(settled, 15, "the run to succeed (or be poisoned)", details=details)
    records = cluster.records()
    ledger = cluster.ledger()
    dead = cluster.redis.llen(f"{cluster.prefix}:q:dead")
    print(f"\nfaults[hand-backs]: executions={len(ledger)} records={state_counts(records)} dead_letters={dead} "
          f"poison_reason={[r.error_message for r in records if r.state is RunState.POISON]}")
    assert state_counts(records) == {"interrupted": 2, "succeeded": 1}, details()
    assert dead == 0
    assert len(ledger) == 3



# -- 6. Redis restarted under a running `sts run` -------------------------------------------------------------


def _sleep_until_phase(cluster: Cluster, phase: float) -> None:
    """Sleep until ``phase`` seconds after a fire time of the 1 s interval tasks (all fired at once)."""
    latest = max(e.scheduled_us for e in cluster.ledger())
    now_us = int(time.time() * SECOND_US)
    target = latest + int(phase * SECOND_US)
    while target < now_us + 200_000:
        target += SECOND_US
    time.sleep((target - now_us) / SECOND_US)


def _ticking(cluster: Cluster, count: int, *, lease: str, seconds: float) -> tuple[Any, Callable[[float], set[str]]]:
    """Start `sts run` with ``count`` tasks firing every second (each running ``seconds``) and wait
    until every one has fired; returns the process and ``fired_since(wall)``: the tasks that
    started at or after that wall time."""
    config = cluster.config(lease=lease)
    task_file = cluster.task_file(
        {"name": f"tick{i}", "function": "fault_jobs:record", "every": "1s", "kwargs": {"seconds": seconds}}
        for i in range(count)
    )
    sts = cluster.start("run", "run", str(task_file), "--config", str(config))
    cluster.wait_started(sts)

    def fired_since(wall: float) -> set[str]:
        return {e.task for e in cluster.ledger() if e.started >= wall}

    cluster.wait_until(lambda: len(fired_since(0)) == count, 15, "every task to fire once")
    return sts, fired_since


@pytest.mark.timeout(120)
def test_redis_restart_under_running_scheduler(tmp_path: Path, redis_server_factory: ServerFactory) -> None:
    server = redis_server_factory(appendonly=True)
    cluster = Cluster(tmp_path, server.url, _prefix("restart"))
    count = 10
    down_for = 3.0
    try:
        sts, fired_since = _ticking(cluster, count, lease=LEASE, seconds=0.005)
        time.sleep(1.0)
        _sleep_until_phase(cluster, 0.5)  # between two bursts of fires: no run is in flight
        log_before = len(sts.log_text())
        down_wall = time.time()
        server.stop()
        time.sleep(down_for)
        alive_while_down = sts.alive
        server.start()
        up_wall = time.time()
        back_after = cluster.wait_until(lambda: len(fired_since(up_wall)) == count, 15,
                                        "every task to fire again after Redis returned",
                                        details=lambda: f"fired since: {sorted(fired_since(up_wall))}")
        time.sleep(1.0)
        outage_log = sts.log_text()[log_before:]
        lines = outage_log.splitlines()
        unreachable = [line for line in lines if "unreachable" in line]
        tracebacks = [line for line in lines if "Traceback" in line]
        warnings = [line for line in lines if " WARNING " in line or " ERROR " in line]
        stored = cluster.redis.hgetall(f"{cluster.prefix}:tasks")
        due = cluster.redis.zcard(f"{cluster.prefix}:due")
        records = cluster.records()
        states = state_counts(records)
        ledger = cluster.ledger()
        silent = {}
        for i in range(count):
            times = sorted(e.scheduled_us for e in ledger if e.task == f"tick{i}")
            silent[f"tick{i}"] = max(b - a for a, b in pairwise(times)) / SECOND_US
        print(
            f"\nfaults[redis-restart]: tasks={count} down={down_for:g}s alive_while_down={alive_while_down} "
            f"all_fired_again_after={back_after:.1f}s tasks_stored={len(stored)} due_entries={due} "
            f"unreachable_lines={len(unreachable)} traceback_lines={len(tracebacks)} "
            f"warning_or_error_lines={len(warnings)} longest_silence={max(silent.values()):.1f}s "
            f"executions={len(ledger)} states={states} downtime_wall={up_wall - down_wall:.1f}s"
        )
        assert alive_while_down and sts.alive, sts.tail(60)
        assert len(stored) == count and due == count
        assert unreachable, outage_log
        assert len(tracebacks) < 10, outage_log
        assert back_after <= 5.0, outage_log
        assert states.get("running", 0) == 0 or sts.alive
    finally:
        cluster.stop_all()

@pytest.mark.timeout(120)
def test_redis_restart_with_runs_in_flight(tmp_path: Path, redis_server_factory: ServerFactory) -> None:
    # As above, but Redis goes away while every task has a run in flight (runs take 0.4 s, Redis
    # stops 0.2 s after the fires), with the default lease of 30 s.
    server = redis_server_factory(appendonly=True)
    cluster = Cluster(tmp_path, server.url, _prefix("inflight"))
    count = 10
    try:
        sts, fired_since = _ticking(cluster, count, lease="30s", seconds=0.4)
        time.sleep(1.0)
        _sleep_until_phase(cluster, 0.2)
        in_flight = sum(1 for e in cluster.ledger() if e.ended is None)
        log_before = len(sts.log_text())
        server.stop()
        time.sleep(3.0)
        server.start()
        up_wall = time.time()
        try:
            cluster.wait_until(lambda: len(fired_since(up_wall)) == count, 10,
                               "every task to fire again after Redis returned",
                               details=lambda: f"fired since: {sorted(fired_since(up_wall))}")
        finally:
            lines = sts.log_text()[log_before:].splitlines()
            records = cluster.records()
            print(f"\nfaults[redis-restart-in-flight]: tasks={count} in_flight_at_outage={in_flight} "
                  f"fired_again_within_10s={len(fired_since(up_wall))} states={state_counts(records)} "
                  f"traceback_lines={sum('Traceback' in line for line in lines)} "
                  f"could_not_be_completed={sum('could not be completed' in line for line in lines)}")
        assert sts.alive
        assert not any("Traceback" in line or "could not be completed" in line for line in lines)
        # the runs in flight recorded their outcome once Redis was back: none ran twice, none was lost
        executions = Counter(e.fire_id for e in cluster.ledger())
        assert max(executions.values()) == 1, [fire for fire, n in executions.items() if n > 1]
        assert state_counts(cluster.records()).get("lost", 0) == 0
    finally:
        cluster.stop_all()


# -- 7. every process stopped and started again ---------------------------------------------------------------


@pytest.mark.timeout(120)
def test_tasks_and_history_survive_a_full_restart(cluster: Cluster) -> None:
    count = 5
    config = cluster.config(lease=LEASE)
    task_file = cluster.task_file(
        {"name": f"tick{i}", "function": "fault_jobs:record", "every": "1s", "kwargs": {"seconds": 0.005}}
        for i in range(count)
    )
    scheduler = cluster.start("scheduler", "scheduler", str(task_file), "--config", str(config))
    worker = cluster.start("worker", "worker", "--config", str(config))
    cluster.wait_started(scheduler, worker)

    def fired_since(wall: float) -> Counter[str]:
        return Counter(e.task for e in cluster.ledger() if e.started >= wall)

    cluster.wait_until(lambda: len(fired_since(0)) == count and min(fired_since(0).values()) >= 2, 15,
                       "every task to fire twice")
    for process in (scheduler, worker):
        process.send(signal.SIGTERM)
    codes = [process.wait(15) for process in (scheduler, worker)]
    before = {run.id: run.state for run in cluster.store_runs()}
    versions_before = {name: value.split(b":", 1)[0] for name, value in
                       cluster.redis.hgetall(f"{cluster.prefix}:tasks").items()}
    time.sleep(1.0)

    restart_wall = time.time()
    scheduler2 = cluster.start("scheduler2", "scheduler", "--config", str(config))  # no task file
    worker2 = cluster.start("worker2", "worker", "--config", str(config))
    cluster.wait_started(scheduler2, worker2)
    cluster.wait_until(lambda: len(fired_since(restart_wall)) == count, 15,
                               "every task to fire again after the restart",
                               details=lambda: f"fired since restart: {dict(fired_since(restart_wall))}")
    again = max(min(e.started for e in cluster.ledger() if e.task == f"tick{i}" and e.started >= restart_wall)
                for i in range(count)) - restart_wall
    after = {run.id: run.state for run in cluster.store_runs()}
    versions_after = {name: value.split(b":", 1)[0] for name, value in
                      cluster.redis.hgetall(f"{cluster.prefix}:tasks").items()}
    kept = [run_id for run_id in before if after.get(run_id) == before[run_id]]
    print(
        f"\nfaults[full-restart]: tasks={count} exit_codes={codes} runs_before={len(before)} "
        f"runs_before_still_listed={len(kept)} runs_after={len(after)} all_fired_again_within={again:.1f}s_of_starting "
        f"task_versions={sorted(set(versions_after.values()))} states_before={state_counts_of(before)}"
    )
    assert codes == [0, 0], cluster.describe()
    assert len(before) >= 2 * count
    assert all(state is RunState.SUCCEEDED for state in before.values()), before
    assert len(kept) == len(before), set(before) - set(kept)
    assert len(after) > len(before)
    assert versions_after == versions_before and set(versions_after.values()) == {b"1"}
    assert "no tasks" not in scheduler2.log_text()
    assert again <= 5.0


def state_counts_of(states: dict[str, RunState]) -> dict[str, int]:
    return dict(Counter(state.value for state in states.values()))


# -- 8. memory after draining 20,000 runs; a server at maxmemory ----------------------------------------------


def _run(number: int, reason: str = "schedule") -> Run:
    now = datetime.now(UTC)
    return Run(id=f"mem-{number}", task_name="mem", task_version=1, scheduled_for=now, reason=reason,
               fire_id=f"mem@{number}", created_at=now)


def _backend(url: str, prefix: str) -> RedisBackend:
    from sts.plugin import SystemClock
    from sts_core.testing import StubConfig
    from sts_redis.backend import build_backend

    return build_backend(StubConfig({"redis": {"url": url, "key_prefix": prefix, "lease_time": "60s"}}), SystemClock())


@pytest.mark.timeout(180)
def test_memory_returns_to_baseline_and_maxmemory_refuses_cleanly(redis_server_factory: ServerFactory) -> None:
    from sts.plugin import BackendError, BackendUnavailableError

    total = 20_000
    server = redis_server_factory()
    prefix = _prefix("memory")

    async def drain() -> dict[str, float]:
        backend = _backend(server.url, prefix)
        broker = backend.broker
        await backend.store.open()
        await broker.open()
        try:
            # Warm up: the scripts are loaded and the connection exists before the baseline.
            await broker.enqueue(_run(-1))
            warm = await broker.consume(1.0)
            assert warm is not None and await broker.ack(warm)
            baseline = server.used_memory()
            started = time.monotonic()
            for number in range(total):
                await broker.enqueue(_run(number))
            peak = server.used_memory()
            consumed = 0
            while True:
                delivery = await broker.consume(0)
                if delivery is None:
                    break
                assert await broker.ack(delivery)
                consumed += 1
            wall = time.monotonic() - started
            depth = await broker.depth()
            return {"baseline": baseline, "peak": peak, "after": server.used_memory(), "consumed": consumed,
                    "depth": depth, "wall": wall}
        finally:
            await broker.close()
            await backend.store.close()

    result = asyncio.run(drain())
    with server.client() as client:
        keys = sorted(key.decode() for key in client.keys(f"{prefix}:*"))
    growth = (result["after"] - result["baseline"]) / result["baseline"]
    print(
        f"\nfaults[memory]: runs={total} consumed={result['consumed']:.0f} depth_after={result['depth']:.0f} "
        f"used_memory baseline={result['baseline']:.0f} peak={result['peak']:.0f} after={result['after']:.0f} "
        f"growth={growth:+.1%} keys_left={keys} wall={result['wall']:.1f}s"
    )
    assert result["consumed"] == total and result["depth"] == 0
    assert result["peak"] > result["baseline"] * 2, "the runs did not take memory: the test measured nothing"
    assert abs(growth) <= 0.10, result
    assert keys == [f"{prefix}:q:seq"], keys

    # A server at maxmemory refuses the write whole: no message without its ready entry.
    small = redis_server_factory(maxmemory="2mb")

    async def fill() -> tuple[int, BaseException | None, str]:
        backend = _backend(small.url, prefix)
        broker = backend.broker
        await broker.open()
        stored, error, refused = 0, None, ""
        try:
            for number in range(100_000):
                run = _run(number, reason="x" * 2000)
                try:
                    await broker.enqueue(run)
                except BackendError as exc:
                    error, refused = exc, run.id
                    break
                stored += 1
        finally:
            await broker.close()
        return stored, error, refused

    stored, error, refused = asyncio.run(fill())
    with small.client() as client:
        messages = client.hlen(f"{prefix}:q:msg")
        ready = client.llen(f"{prefix}:q:ready")
        has_message = client.hexists(f"{prefix}:q:msg", refused)
        ready_ids = {entry.decode() for entry in client.lrange(f"{prefix}:q:ready", 0, -1)}
        used = int(client.info("memory")["used_memory"])
    print(f"faults[maxmemory]: stored_before_refusal={stored} messages={messages} ready={ready} "
          f"refused_run_stored={has_message or refused in ready_ids} used_memory={used} error={error!s:.160}")
    assert error is not None, "maxmemory was never reached"
    assert type(error) is BackendError and not isinstance(error, BackendUnavailableError), repr(error)
    assert "maxmemory" in str(error)
    assert messages == ready == stored
    assert not has_message and refused not in ready_ids
