"""W3 queue throughput over Redis: N no-op runs from one producer through one worker process.

    python -m workloads.w3_queue SYSTEM [--runs 20000]

SYSTEM is ``<name>@c<concurrency>``, e.g. ``sts@c8`` (``--help`` lists them). Each repetition
starts its own redis-server on loopback (no persistence: no RDB, no AOF) and ONE worker process
of the system at that concurrency, started with the CLI a user would run; it waits until a
warm-up task has run through that worker. Then this process, the only producer, enqueues N
no-op runs as fast as the library's own API lets one caller (its bulk call where it has one;
otherwise one call after the other, awaited one after the other on asyncio), and waits until
the worker has executed all N. Prints ``{"enqueue_s", "drain_s", "runs_per_s"}``: the time to
enqueue the N, the drain time (from the first enqueue until the last run has executed) and
N / drain time. The redis-server, the worker (with any children) and a watchdog killing them
should this process die are all stopped on exit.

How the end is seen, the same for every system (``workloads/w3_peers.py``): the no-op counts
its run in the worker process, and the Nth pushes onto a Redis list this process blocks on
(BLPOP): one round trip in all, none per run. That is the moment the function ran; what a
library does after it (recording, acknowledging) counts in so far as it holds up later runs.
A no-op is ``async def`` for the asyncio libraries (STS, arq, Taskiq), a plain function for
the others.

The systems and their concurrency settings:

* ``sts``: ``sts worker --concurrency C`` (redis store and broker). This process runs only the
  scheduler role (``start(worker=False)``), stores one task ``noop`` (``max_instances`` N) and
  queues N runs of it with ``fire_now("noop")``, one after the other: STS's queue call, as
  ``delay()`` is Celery's. Each run is recorded (queued, running, succeeded) and acked after
  its outcome is recorded.
* ``celery``: ``celery worker --pool threads -c C``, at c1 ``--pool solo`` (Celery's
  one-at-a-time pool); ``delay()`` per run. Threads, not the default prefork: prefork would
  run the no-ops in C child processes (8 on a 2-core machine), which a no-op cannot use.
* ``rq``: ``rq worker -w rq.worker.SimpleWorker`` (jobs run in the worker process, one at a
  time; RQ has no concurrency within a worker, so there is no ``rq@c8``); ``enqueue_many``.
* ``dramatiq``: ``dramatiq --processes 1 --threads C``; ``send()`` per run. (Its consumer
  prefetches 2 x threads messages and backs off while that many are unacknowledged, which
  at 1 thread leaves it idle much of the time.)
* ``huey``: ``huey_consumer -w C -k thread``; calling the task per run. No acknowledgement:
  a task taken (BRPOP) by a worker that dies is lost.
* ``arq``: ``max_jobs = C`` and ``poll_delay = 0``; ``enqueue_job()`` per run. arq has no
  blocking read: it polls every poll_delay (default 0.5 s) and starts at most max_jobs jobs
  per poll, so by default arq@c1 runs 2 jobs/s. 0 is a busy poll (no production setting):
  arq at its fastest.
* ``taskiq``: ``taskiq worker --workers 1 --max-async-tasks C`` with taskiq-redis's
  ``RedisStreamBroker`` (a consumer group: acknowledged after the run, at-least-once);
  ``kiq()`` per run.
* ``bare``: no framework, the physical limit: XADD in pipelines of 1,000 from this process; a
  worker doing XREADGROUP COUNT C, running the (up to) C no-ops, then one XACK for them. It
  records nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PEERS = "workloads.w3_peers"
READY_TIMEOUT = 60.0
SYSTEMS = ("sts@c1", "sts@c8", "bare@c1", "bare@c8", "celery@c1", "celery@c8", "rq@c1", "dramatiq@c1",
           "dramatiq@c8", "huey@c1", "huey@c8", "arq@c1", "arq@c8", "taskiq@c1", "taskiq@c8")


def die_with_us(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` sending the child ``sig`` should this process die first (PR_SET_PDEATHSIG).
    Use it from the main thread: the kernel ties the signal to the thread that started the child."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(1, int(sig), 0, 0, 0)


# Kills a worker's process group when this process dies: PR_SET_PDEATHSIG reaches only a direct
# child, and a worker's own children (Dramatiq's worker process) would outlive a SIGKILL of ours.
WATCHDOG = """import os, signal, sys
def kill(*_):
    try:
        os.killpg(int(sys.argv[1]), signal.SIGKILL)
    finally:
        os._exit(0)
signal.signal(signal.SIGTERM, kill)
while True:
    signal.pause()
"""


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 without persistence for the duration; yields its URL
    (``workdir`` is unused: the server keeps its own temporary directory)."""
    from sts_redis.testing import RedisServer

    with RedisServer() as server:
        yield server.url


class Worker:
    """One worker process of the system under test, in a process group of its own (its log in
    ``workdir``), with a watchdog that kills the group should this process die first."""

    def __init__(self, command: list[str], workdir: Path) -> None:
        self.log_path = workdir / f"worker-{len(list(workdir.glob('worker-*.log')))}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, cwd=BENCH, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_us())
        # The watchdog gets SIGTERM when this process dies (however), and then kills the worker's group.
        self._watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(self.process.pid)],
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          preexec_fn=die_with_us(signal.SIGTERM))

    def check(self) -> None:
        """Raise if the worker has exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker exited with {self.process.returncode}; its log:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The end of the worker's log."""
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the worker's group, SIGKILL it after 10 s, then stop the watchdog."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # what the worker's own children left behind
        self._watchdog.kill()
        self._watchdog.wait()
        self._log.close()


def wait_for(key: str, worker: Worker, timeout: float) -> None:
    """Block until an item arrives on the list ``key`` (BLPOP), checking the worker every second."""
    import redis

    client = redis.Redis.from_url(os.environ["W3_REDIS_URL"])
    deadline = time.monotonic() + timeout
    try:
        while client.blpop([key], timeout=1) is None:
            worker.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing on {key} after {timeout:.0f}s; worker log:\n{worker.tail()}")
    finally:
        client.close()


def drain_timeout(runs: int) -> float:
    return 120 + runs / 50  # room for 50 runs/s; the slowest cases (dramatiq@c1, rq@c1) do 250 or more


def timed(enqueue: Callable[[], None], runs: int, worker: Worker) -> tuple[float, float]:
    """Enqueue time and drain time of a synchronous producer (after a warm-up run)."""
    started = time.perf_counter()
    enqueue()
    enqueued = time.perf_counter() - started
    wait_for("w3:done", worker, drain_timeout(runs))
    return enqueued, time.perf_counter() - started


async def atimed(enqueue: Callable[[], object], runs: int, worker: Worker) -> tuple[float, float]:
    """The same for a producer on this process's asyncio loop (the wait runs in a thread)."""
    started = time.perf_counter()
    await enqueue()
    enqueued = time.perf_counter() - started
    await asyncio.to_thread(wait_for, "w3:done", worker, drain_timeout(runs))
    return enqueued, time.perf_counter() - started


# -- the systems: start the worker, warm up, then enqueue and drain ----------------------------------


def sts(runs: int, concurrency: int, workdir: Path) -> tuple[float, float]:
    import yaml

    config = {"scheduler_backend": "redis", "redis": {"url": os.environ["W3_REDIS_URL"], "key_prefix": "sts"},
              "logging": {"loglevel": "WARNING"}}
    path = workdir / "sts.yaml"
    path.write_text(yaml.safe_dump(config))
    worker = Worker([str(BIN / "sts"), "worker", "--config", str(path), "--concurrency", str(concurrency)], workdir)
    try:
        return asyncio.run(_sts(config, runs, worker))
    finally:
        worker.stop()


async def _sts(config: dict, runs: int, worker: Worker) -> tuple[float, float]:
    from sts_core.config import Config
    from sts_core.scheduler import AsyncTaskScheduler
    from sts_core.task import Task

    async with AsyncTaskScheduler(Config(config)) as scheduler:
        await scheduler.start(worker=False)
        await scheduler.add_task(Task("ready", f"{PEERS}:sts_ready"))
        await asyncio.to_thread(wait_for, "w3:ready", worker, READY_TIMEOUT)
        # One stored task, fired N times: STS's way to queue runs of a function (fire_now), as delay(),
        # enqueue() or kiq() are the peers'. max_instances lets every run be queued at once.
        await scheduler.add_task(Task("noop", f"{PEERS}:sts_noop", max_instances=runs))

        async def enqueue() -> None:
            for _ in range(runs):
                await scheduler.fire_now("noop")

        return await atimed(enqueue, runs, worker)


def bare(runs: int, concurrency: int, workdir: Path) -> tuple[float, float]:
    import redis

    from workloads.w3_peers import GROUP, STREAM

    client = redis.Redis.from_url(os.environ["W3_REDIS_URL"])
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    worker = Worker([sys.executable, "-m", PEERS, "bare", str(concurrency)], workdir)
    try:
        client.xadd(STREAM, {"job": json.dumps({"f": "ready"})})
        wait_for("w3:ready", worker, READY_TIMEOUT)
        job = json.dumps({"f": "noop"})

        def enqueue() -> None:
            for first in range(0, runs, 1000):
                pipe = client.pipeline(transaction=False)
                for _ in range(first, min(first + 1000, runs)):
                    pipe.xadd(STREAM, {"job": job})
                pipe.execute()

        return timed(enqueue, runs, worker)
    finally:
        worker.stop()
        client.close()


def celery(runs: int, concurrency: int, workdir: Path) -> tuple[float, float]:
    from workloads.w3_peers import celery_app

    pool = ["--pool", "solo"] if concurrency == 1 else ["--pool", "threads", "--concurrency", str(concurrency)]
    worker = Worker([str(BIN / "celery"), "-A", f"{PEERS}:celery_app", "worker", "--loglevel", "WARNING", *pool],
                    workdir)
    try:
        celery_app.tasks["w3.ready"].delay()
        wait_for("w3:ready", worker, READY_TIMEOUT)
        noop = celery_app.tasks["w3.noop"]

        def enqueue() -> None:
            for _ in range(runs):
                noop.delay()

        return timed(enqueue, runs, worker)
    finally:
        worker.stop()


def rq(runs: int, concurrency: int, workdir: Path) -> tuple[float, float]:
    import redis
    from rq import Queue

    client = redis.Redis.from_url(os.environ["W3_REDIS_URL"])
    queue = Queue(connection=client)
    worker = Worker([str(BIN / "rq"), "worker", "-w", "rq.worker.SimpleWorker", "-u", os.environ["W3_REDIS_URL"],
                     "-q"], workdir)
    try:
        queue.enqueue(f"{PEERS}.rq_ready")
        wait_for("w3:ready", worker, READY_TIMEOUT)
        jobs = [Queue.prepare_data(f"{PEERS}.rq_noop") for _ in range(runs)]
        return timed(lambda: queue.enqueue_many(jobs), runs, worker)
    finally:
        worker.stop()
        client.close()


def dramatiq(runs: int, concurrency: int, workdir: Path) -> tuple[float, float]:
    from workloads.w3_peers import dramatiq_broker

    worker = Worker([str(BIN / "dramatiq"), f"{PEERS}:dramatiq_broker", "--processes", "1",
                     "--threads", str(concurrency)], workdir)
    try:
        dramatiq_broker.get_actor("w3_ready").send()
        wait_for("w3:ready", worker, READY_TIMEOUT)
        noop = dramatiq_broker.get_actor("w3_noop")

        def enqueue() -> None:
            for _ in range(runs):
                noop.send()

        return timed(enqueue, runs, worker)
    finally:
        worker.stop()


def huey(runs: int, concurrency: int, workdir: Path) -> tuple[float, float]:
    from workloads import w3_peers

    w3_peers.huey  # noqa: B018 - builds the Huey instance and its tasks
    worker = Worker([str(BIN / "huey_consumer"), f"{PEERS}.huey", "-w", str(concurrency), "-k", "thread", "-q"],
                    workdir)
    try:
        w3_peers.HUEY_TASKS["ready"]()
        wait_for("w3:ready", worker, READY_TIMEOUT)
        noop = w3_peers.HUEY_TASKS["noop"]

        def enqueue() -> None:
            for _ in range(runs):
                noop()

        return timed(enqueue, runs, worker)
    finally:
        worker.stop()


def arq(runs: int, concurrency: int, workdir: Path) -> tuple[float, float]:
    worker = Worker([str(BIN / "arq"), f"{PEERS}.ArqSettings"], workdir)
    try:
        return asyncio.run(_arq(runs, worker))
    finally:
        worker.stop()


async def _arq(runs: int, worker: Worker) -> tuple[float, float]:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(os.environ["W3_REDIS_URL"]))
    try:
        await pool.enqueue_job("arq_ready")
        await asyncio.to_thread(wait_for, "w3:ready", worker, READY_TIMEOUT)

        async def enqueue() -> None:
            for _ in range(runs):
                await pool.enqueue_job("arq_noop")

        return await atimed(enqueue, runs, worker)
    finally:
        await pool.aclose()


def taskiq(runs: int, concurrency: int, workdir: Path) -> tuple[float, float]:
    worker = Worker([str(BIN / "taskiq"), "worker", f"{PEERS}:taskiq_broker", "--workers", "1",
                     "--max-async-tasks", str(concurrency), "--log-level", "WARNING"], workdir)
    try:
        return asyncio.run(_taskiq(runs, worker))
    finally:
        worker.stop()


async def _taskiq(runs: int, worker: Worker) -> tuple[float, float]:
    from workloads.w3_peers import taskiq_broker

    await taskiq_broker.startup()
    try:
        tasks = taskiq_broker.get_all_tasks()
        await tasks["w3_ready"].kiq()
        await asyncio.to_thread(wait_for, "w3:ready", worker, READY_TIMEOUT)
        noop = tasks["w3_noop"]

        async def enqueue() -> None:
            for _ in range(runs):
                await noop.kiq()

        return await atimed(enqueue, runs, worker)
    finally:
        await taskiq_broker.shutdown()


RUNNERS: dict[str, Callable[[int, int, Path], tuple[float, float]]] = {
    "sts": sts, "bare": bare, "celery": celery, "rq": rq, "dramatiq": dramatiq, "huey": huey, "arq": arq,
    "taskiq": taskiq,
}


def measure(system: str, runs: int) -> tuple[float, float]:
    """Start redis-server, set the environment the workers read, and run one system once."""
    name, _, level = system.partition("@c")
    with tempfile.TemporaryDirectory(prefix="w3-") as workdir, redis_server(Path(workdir)) as url:
        os.environ.update(W3_REDIS_URL=url, W3_RUNS=str(runs), W3_CONCURRENCY=level,
                          PYTHONPATH=os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])))
        return RUNNERS[name](runs, int(level), Path(workdir))


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: stop the worker and redis-server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("--runs", type=int, default=20_000)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    enqueue_s, drain_s = measure(args.system, args.runs)
    print(json.dumps({"enqueue_s": enqueue_s, "drain_s": drain_s, "runs_per_s": args.runs / drain_s}))


if __name__ == "__main__":
    main()
