"""Fault tests of the RabbitMQ broker with real ``sts`` processes: tasks and history in a real
redis-server, runs delivered through a real RabbitMQ node (quorum queues); workers SIGKILLed, a
run that kills its worker every time, and the node itself SIGKILLed while runs are published.

Outcomes are counted from the ledger of ``plugins/sts-redis/tests/fault_jobs.py`` (one SQLite
row per execution, written at the start of the task function) and compared with STS's run
records in Redis; the process harness is ``plugins/sts-redis/tests/procs.py``. Each test prints
a one-line summary of its counts (``pytest -s`` shows them).

Tests on the session's node use a fresh queue prefix (deleted afterwards) and a fresh Redis key
prefix; tests that kill the node start a private one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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

import pika
import pika.exceptions
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sts-redis" / "tests"))

from procs import (
    Cluster,
    StsProcess,
    by_fire,
    double_successes,
    records_by_fire,
    state_counts,
    unmatched_repeats,
)

from sts.plugin import BackendError, Run, RunState, SystemClock
from sts_core.testing import StubConfig
from sts_rabbitmq import codec
from sts_rabbitmq.settings import build_broker
from sts_rabbitmq.testing import RabbitServer
from sts_rabbitmq.topology import LEVELS, Names

#: The lease of a run (RabbitMQ requeues a dead worker's runs when its connection closes; the
#: lease matters only for a worker that stalls).
LEASE = "5s"
#: How long a process waits at most between two attempts to reconnect (default 10s; shorter
#: keeps the outage tests short).
MAX_RECONNECT_DELAY = "2s"
ServerFactory = Callable[..., RabbitServer]


def _redis_prefix(name: str) -> str:
    return f"rfault-{name}-{secrets.token_hex(3)}"


class Queues:
    """One prefix's queues on a node, read with a blocking connection of the test's own."""

    def __init__(self, server: RabbitServer, prefix: str) -> None:
        self.server = server
        self.names = Names(prefix)
        self._connection: pika.BlockingConnection | None = None
        # pika logs every refused connection at ERROR with a traceback (the plugin does the same).
        logging.getLogger("pika").setLevel(logging.CRITICAL)

    def _channel(self) -> Any:
        if self._connection is None or not self._connection.is_open:
            self._connection = self.server.connection()
        return self._connection.channel()

    def depth(self) -> int | None:
        """Messages ready in ``<prefix>.runs`` and waiting in the delay ladder (unacked ones are
        not counted); None while the node cannot answer."""
        queues = [self.names.runs, *(self.names.delay(level) for level in range(LEVELS))]
        try:
            channel = self._channel()
            try:
                return sum(channel.queue_declare(queue, passive=True).method.message_count for queue in queues)
            finally:
                if channel.is_open:
                    channel.close()
        except (pika.exceptions.AMQPError, OSError):
            self.close()
            return None

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every message in ``<prefix>.dead`` (read unacked, then put back by closing the connection)."""
        connection = self.server.connection()
        entries = []
        try:
            channel = connection.channel()
            while True:
                method, properties, body = channel.basic_get(self.names.dead, auto_ack=False)
                if method is None:
                    break
                entries.append(codec.dead_letter_entry(body, properties))
        finally:
            connection.close()
        return entries

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()


def _config(cluster: Cluster, url: str, prefix: str, **options: Any) -> Path:
    """A config on Redis (tasks, history) with runs delivered through RabbitMQ under ``prefix``."""
    rabbitmq = {"url": url, "prefix": prefix, "lease_time": LEASE, "max_reconnect_delay": MAX_RECONNECT_DELAY}
    return cluster.config(lease=LEASE, extra={"broker": "rabbitmq", "rabbitmq": rabbitmq}, **options)


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster with a fresh Redis key prefix; every process stopped afterwards."""
    group = Cluster(tmp_path, redis_url, _redis_prefix(request.node.name.removeprefix("test_")[:20]))
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def queues(rabbitmq_server: RabbitServer, rabbit_prefixes: Callable[[], str]) -> Iterator[Queues]:
    """A fresh queue prefix on the session's node (its queues deleted afterwards)."""
    reader = Queues(rabbitmq_server, rabbit_prefixes())
    try:
        yield reader
    finally:
        reader.close()


# -- 1. workers SIGKILLed while 2,000 runs drain ------------------------------------------------------------


@pytest.mark.timeout(180)
def test_sigkilled_worker_loses_no_run(cluster: Cluster, queues: Queues) -> None:
    total = 2000
    config = _config(cluster, queues.server.url(), queues.names.prefix)
    # Due over 8 s (250 a second), so that runs keep coming while the victim restarts: all due at
    # once, they drain in about 3 s and a restarted victim may find none left to take.
    tasks = cluster.task_file(
        {"name": f"r{i:04d}", "function": "fault_jobs:record", "delay": round(0.004 * i + 0.5, 3),
         "kwargs": {"seconds": 0.03, "jitter": 0.04}}  # ~4 runs in flight per worker at any time
        for i in range(total)
    )
    workers = [cluster.start(f"worker{i}", "worker", "--config", str(config), "--concurrency", "8") for i in range(3)]
    cluster.wait_started(*workers)
    scheduler = cluster.start("scheduler", "scheduler", str(tasks), "--config", str(config))
    victim = workers[0]
    started = time.monotonic()

    def progress() -> str:
        return (f"executions={cluster.executions()} records={state_counts(cluster.records())} "
                f"depth={queues.depth()}")

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
        if len(by_fire(cluster.ledger())) < total or queues.depth() != 0:
            return False
        succeeded = {r.fire_id for r in cluster.records() if r.state is RunState.SUCCEEDED}
        return len(succeeded) == total

    cluster.wait_until(complete, 90, f"all {total} runs to succeed", details=progress)
    elapsed = time.monotonic() - started
    time.sleep(0.5)  # a late redelivery would show now
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
        f"\nfaults[rabbitmq-sigkill]: runs={total} executions={len(ledger)} fires_executed={len(executed)} "
        f"duplicates_in_ledger={len(ledger) - len(executed)} fires_repeated={len(repeated)} "
        f"lost_records={states.get('lost', 0)} duplicate_records={states.get('duplicate', 0)} "
        f"succeeded_records={states.get('succeeded', 0)} double_succeeded_fires={len(double_success)} "
        f"unmatched_repeats={len(unmatched)} kills(pid,in_flight)={kills} states={states} wall={elapsed:.1f}s"
    )
    assert len(executed) == total
    assert set(recorded) == set(executed)
    assert states.get("running", 0) == 0, states
    assert states.get("poison", 0) == 0, states
    assert not unmatched, f"fires executed twice without a lost/duplicate record: {unmatched}"
    assert not double_success, f"fires recorded succeeded more than once: {double_success}"
    assert sum(n for _, n in kills) >= 1, f"no kill landed while runs were executing: {kills}"
    assert len(repeated) >= 1, "no kill caused a redelivery; the test did not test anything"


# -- 2. a run that kills its worker every time ----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_poison_run_is_dead_lettered(cluster: Cluster, queues: Queues) -> None:
    normal = 200
    max_redeliveries = 3
    config = _config(cluster, queues.server.url(), queues.names.prefix, max_redeliveries=max_redeliveries)
    # The normal runs are spread over ~10 s (delay triggers), so they keep flowing while the
    # poison run is delivered again and again; the poison run waits 0.2 s before killing its
    # worker, so the runs taken with it are mostly done by then.
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

    def progress() -> str:
        return (f"executions={cluster.executions()} records={state_counts(cluster.records())} "
                f"dead={queues.dead_letters()} depth={queues.depth()} restarts={restarts}")

    def done() -> bool:
        records = cluster.records()
        succeeded = {r.task_name for r in records if r.state is RunState.SUCCEEDED}
        poisoned = any(r.task_name == "poison" and r.state is RunState.POISON for r in records)
        return poisoned and len(succeeded) == normal and queues.depth() == 0

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
    dead = queues.dead_letters()
    states = state_counts(records)
    print(
        f"\nfaults[rabbitmq-poison]: normal_runs={normal} normal_executions={sum(map(len, normal_executed.values()))} "
        f"normal_repeated={len(repeated)} poison_executions={len(poison_runs)} "
        f"poison_records={state_counts(poison_records.values())} dead_letters={len(dead)} "
        f"dead_reason={[d['reason'] for d in dead]} worker_restarts={len(restarts)} states={states} "
        f"wall={elapsed:.1f}s"
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
    assert len(normal_executed) == normal
    for fire, runs in normal_recorded.items():
        assert any(r.state is RunState.SUCCEEDED for r in runs), (fire, [(r.id, r.state.value) for r in runs])
        assert not any(r.state is RunState.POISON for r in runs), fire
    assert not unmatched, unmatched


# -- 3. the node SIGKILLed while the scheduler publishes runs -------------------------------------------------


def _log_since(process: StsProcess, offset: int) -> str:
    return process.log_text()[offset:]


@pytest.mark.timeout(180)
def test_broker_killed_while_runs_are_published(tmp_path: Path, redis_url: str,
                                                rabbitmq_server_factory: ServerFactory) -> None:
    total = 2000
    spread = 8.0
    down_for = 3.0
    server = rabbitmq_server_factory()
    queues = Queues(server, f"faults-{secrets.token_hex(3)}")
    cluster = Cluster(tmp_path, redis_url, _redis_prefix("broker-kill"))
    try:
        config = _config(cluster, server.url(), queues.names.prefix)
        # One-shot runs due over `spread` seconds: the scheduler publishes all the time.
        tasks = cluster.task_file(
            {"name": f"p{i:04d}", "function": "fault_jobs:record", "delay": round(1.0 + spread * i / total, 3),
             "kwargs": {"seconds": 0.005, "jitter": 0.015}}
            for i in range(total)
        )
        workers = [cluster.start(f"worker{i}", "worker", "--config", str(config), "--concurrency", "8")
                   for i in range(2)]
        cluster.wait_started(*workers)
        scheduler = cluster.start("scheduler", "scheduler", str(tasks), "--config", str(config))
        cluster.wait_started(scheduler)
        processes = [scheduler, *workers]

        def progress() -> str:
            return (f"executions={cluster.executions()} fires={len(by_fire(cluster.ledger()))} "
                    f"records={state_counts(cluster.records())} depth={queues.depth()}")

        cluster.wait_until(lambda: cluster.executions() >= total // 4, 30, f"{total // 4} executions",
                           details=progress)
        offsets = {p.name: len(p.log_text()) for p in processes}
        executions_at_kill = cluster.executions()
        kill_wall = time.time()
        server.kill()
        time.sleep(down_for)
        alive_while_down = {p.name: p.alive for p in processes}
        executions_while_down = cluster.executions() - executions_at_kill
        server.start()
        up = time.monotonic()
        up_wall = time.time()
        reconnected_after: dict[str, float] = {}

        def watch_reconnects() -> None:
            for process in processes:
                name = process.name
                if name not in reconnected_after and "reconnected" in _log_since(process, offsets[name]):
                    reconnected_after[name] = time.monotonic() - up

        first_after = cluster.wait_until(lambda: any(e.started >= up_wall for e in cluster.ledger()), 60,
                                         "a run to execute after the node returned", details=progress,
                                         each=watch_reconnects)

        def complete() -> bool:
            if len(by_fire(cluster.ledger())) < total or queues.depth() != 0:
                return False
            succeeded = {r.fire_id for r in cluster.records() if r.state is RunState.SUCCEEDED}
            return len(succeeded) == total and len(reconnected_after) == len(processes)

        cluster.wait_until(complete, 90, f"all {total} runs to succeed and every process to reconnect",
                           details=lambda: f"{progress()} reconnected_after={reconnected_after}",
                           each=watch_reconnects)
        all_done_after = time.monotonic() - up
        time.sleep(1.0)  # a late redelivery would show now

        ledger = cluster.ledger()
        executed = by_fire(ledger)
        records = cluster.records()
        recorded = records_by_fire(records)
        states = state_counts(records)
        repeated = {fire: runs for fire, runs in executed.items() if len(runs) > 1}
        unmatched = unmatched_repeats(executed, recorded)
        double_success = double_successes(recorded)
        outage_logs = {p.name: _log_since(p, offsets[p.name]) for p in processes}
        lost_lines = {name: text.count("connection lost") for name, text in outage_logs.items()}
        tracebacks = {name: text.count("Traceback") for name, text in outage_logs.items()}
        print(
            f"\nfaults[rabbitmq-node-kill]: runs={total} executions={len(ledger)} fires_executed={len(executed)} "
            f"fires_repeated={len(repeated)} duplicates_in_ledger={len(ledger) - len(executed)} "
            f"lost_records={states.get('lost', 0)} duplicate_records={states.get('duplicate', 0)} "
            f"double_succeeded_fires={len(double_success)} unmatched_repeats={len(unmatched)} "
            f"executions_at_kill={executions_at_kill} executions_while_down={executions_while_down} "
            f"down={down_for:g}s+start outage_wall={up_wall - kill_wall:.1f}s "
            f"reconnected_after_start={ {k: round(v, 1) for k, v in sorted(reconnected_after.items())} } "
            f"first_run_after_start={first_after:.1f}s all_done_after_start={all_done_after:.1f}s "
            f"connection_lost_lines={lost_lines} traceback_lines={tracebacks} states={states}"
        )
        assert all(alive_while_down.values()), alive_while_down
        assert all(p.alive for p in processes), cluster.describe()
        assert all(p.starts == 1 for p in processes)
        assert len(executed) == total, f"fires never executed: {total - len(executed)}"
        assert set(recorded) == set(executed)
        assert states.get("running", 0) == 0, states
        assert not unmatched, f"fires executed twice without a lost/duplicate record: {unmatched}"
        for name, text in outage_logs.items():
            assert "reconnected" in text, f"{name} did not log reconnecting:\n{text[-3000:]}"
        assert queues.depth() == 0
    finally:
        cluster.stop_all()
        queues.close()


# -- 4. publisher confirms across a SIGKILL of the node (in one process) --------------------------------------


@pytest.mark.timeout(120)
def test_no_confirmed_publish_is_lost_when_the_node_is_killed(
    rabbitmq_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    total = 3000
    kill_at = total // 2
    down_for = 2.0
    server = rabbitmq_server_factory()
    prefix = f"confirms-{secrets.token_hex(3)}"
    caplog.set_level("WARNING", logger="sts.rabbitmq")

    def broker() -> Any:
        section = {"url": server.url(), "prefix": prefix, "prefetch": 16, "lease_time": "60s",
                   "connect_timeout": "2s", "confirm_timeout": "5s", "max_reconnect_delay": "1s"}
        return build_broker(StubConfig({"rabbitmq": section}), SystemClock())

    async def main() -> dict[str, Any]:
        publisher, consumers = broker(), [broker(), broker()]
        for each in (publisher, *consumers):
            await each.open()
        confirmed: list[str] = []
        consumed: list[str] = []
        counts_seen: dict[str, list[int]] = {}  # run id -> the delivery_count of each delivery
        failed_acks = [0]
        publish_errors: Counter[str] = Counter()
        timeline: dict[str, float] = {}
        confirm_times: list[float] = []
        publishing_done = asyncio.Event()
        stop = asyncio.Event()

        async def publish() -> None:
            now = datetime.now(UTC)
            for number in range(total):
                run = Run(id=f"c{number:05d}", task_name="confirm", task_version=1, scheduled_for=now,
                          reason="schedule", fire_id=f"confirm@{number}", created_at=now)
                while True:
                    try:
                        await publisher.enqueue(run)
                    except BackendError as exc:
                        publish_errors[type(exc).__name__] += 1
                        await asyncio.sleep(0.05)
                        continue
                    break
                confirmed.append(run.id)
                confirm_times.append(time.monotonic())
            publishing_done.set()

        async def consume(consumer: Any) -> None:
            while not stop.is_set():
                try:
                    deliveries = await consumer.consume_many(8, 0.5)
                except BackendError:
                    await asyncio.sleep(0.1)
                    continue
                for delivery in deliveries:
                    consumed.append(delivery.run.id)
                    counts_seen.setdefault(delivery.run.id, []).append(delivery.delivery_count)
                    try:
                        acked = await consumer.ack(delivery)
                    except BackendError:
                        acked = False
                    failed_acks[0] += not acked

        async def crash() -> None:
            while len(confirmed) < kill_at:
                await asyncio.sleep(0.01)
            timeline["killed"] = time.monotonic()
            timeline["confirmed_at_kill"] = len(confirmed)
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(down_for)
            await asyncio.to_thread(server.start)
            timeline["started"] = time.monotonic()

        tasks = [asyncio.create_task(publish()), asyncio.create_task(crash()),
                 *(asyncio.create_task(consume(c)) for c in consumers)]
        try:
            await asyncio.wait_for(publishing_done.wait(), 60)
            deadline = time.monotonic() + 30
            while not set(confirmed) <= set(consumed) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            timeline["drained"] = time.monotonic()
            await asyncio.sleep(0.5)  # late redeliveries show now
            counts = await consumers[0].queue_counts()
        finally:
            stop.set()
            await asyncio.gather(*tasks[2:], return_exceptions=True)
            for task in tasks[:2]:
                task.cancel()
            await asyncio.gather(*tasks[:2], return_exceptions=True)
            generations = [b.link.generation for b in (publisher, *consumers)]
            available = [b.available for b in (publisher, *consumers)]
            for each in (publisher, *consumers):
                await each.close()
        return {"confirmed": confirmed, "consumed": consumed, "failed_acks": failed_acks[0],
                "errors": dict(publish_errors), "timeline": timeline, "generations": generations,
                "available": available, "counts": counts,
                "delivery_counts": counts_seen,
                "publish_gap": max((b - a for a, b in pairwise(confirm_times)), default=0.0)}

    started = time.monotonic()
    result = asyncio.run(main())
    wall = time.monotonic() - started
    confirmed, consumed, timeline = result["confirmed"], result["consumed"], result["timeline"]
    seen = Counter(consumed)
    missing = sorted(set(confirmed) - set(seen))
    duplicates = {run_id: n for run_id, n in seen.items() if n > 1}
    # A message delivered n times before shows delivery_count n + 1 (messages pushed to a
    # consumer and never taken by it aside): a jump means the count is not the deliveries seen.
    jumps = {run_id: counts for run_id, counts in result["delivery_counts"].items()
             if counts != list(range(1, len(counts) + 1))}
    reconnected_lines = sum("reconnected" in record.getMessage() for record in caplog.records)
    print(
        f"\nfaults[rabbitmq-confirms]: published={total} confirmed={len(confirmed)} consumed={len(consumed)} "
        f"distinct_consumed={len(seen)} missing={len(missing)} duplicated_ids={len(duplicates)} "
        f"extra_deliveries={len(consumed) - len(seen)} delivery_count_jumps={jumps} "
        f"failed_acks={result['failed_acks']} "
        f"publish_errors={result['errors']} confirmed_at_kill={timeline.get('confirmed_at_kill')} "
        f"down={down_for:g}s+start longest_publish_gap={result['publish_gap']:.1f}s "
        f"restart_took={timeline.get('started', 0.0) - timeline.get('killed', 0.0) - down_for:.1f}s "
        f"drained_after_start={timeline.get('drained', 0.0) - timeline.get('started', 0.0):.1f}s "
        f"generations={result['generations']} reconnected_log_lines={reconnected_lines} "
        f"queues_after={result['counts']} wall={wall:.1f}s"
    )
    assert "started" in timeline, "the node was never killed and restarted"
    assert len(confirmed) == total == len(set(confirmed))
    assert not missing, f"{len(missing)} confirmed runs never consumed, e.g. {missing[:10]}"
    assert all(generation >= 2 for generation in result["generations"]), result["generations"]
    assert all(result["available"]), result["available"]
    assert reconnected_lines >= 3
    assert result["counts"]["ready"] == 0 and result["counts"]["dead"] == 0, result["counts"]
