"""A quick look at the engine's speed on the Redis backend (the benchmark issue makes it rigorous).

    .venv/bin/python bench/redis_quick.py [--runs 5000] [--workers 1] [--broker rabbitmq]

Starts its own redis-server on loopback (sts_redis.testing.RedisServer), with ``--broker
rabbitmq`` also a RabbitMQ node (sts_rabbitmq.testing.RabbitServer) that delivers the runs, and W `sts worker`
subprocesses, then adds N tasks without a trigger (each runs once: an async no-op) from this
process, which runs only the scheduler role. Reports how long firing and queueing all of them
took, and how long until every run was recorded succeeded (runs/s). Logging at WARNING.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sts_core.config import Config
from sts_core.scheduler import AsyncTaskScheduler
from sts_core.task import Task
from sts_redis.testing import RedisServer


async def anoop() -> None:
    """An asynchronous no-op."""


def _config(url: str, amqp_url: str | None = None) -> dict:
    config = {
        "scheduler_backend": "redis",
        "redis": {"url": url, "key_prefix": "bench"},
        "logging": {"loglevel": "WARNING"},
        "history": {"max_runs_per_task": 10},
    }
    if amqp_url is not None:
        config.update(broker="rabbitmq", rabbitmq={"url": amqp_url, "prefix": "bench"})
    return config


async def measure(url: str, runs: int, workers: int, concurrency: int, workdir: Path,
                  amqp_url: str | None = None) -> None:
    import yaml

    config_path = workdir / "sts.yaml"
    config_path.write_text(yaml.safe_dump(_config(url, amqp_url)))
    sts = str(Path(sys.executable).with_name("sts"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    procs = [
        subprocess.Popen([sts, "worker", "--config", str(config_path), "--concurrency", str(concurrency)],
                         cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    try:
        time.sleep(1.5)  # workers up and waiting
        async with AsyncTaskScheduler(Config(_config(url, amqp_url))) as scheduler:
            await scheduler.add_tasks([Task(f"t{i}", "redis_quick:anoop") for i in range(runs)])
            started = time.perf_counter()
            await scheduler.start(worker=False)
            while await scheduler.backend.store.next_due_time() is not None:
                await asyncio.sleep(0.01)
            queued = time.perf_counter() - started
            while True:
                done = len(await scheduler.runs(state="succeeded", limit=runs + 1))
                if done >= runs:
                    break
                await asyncio.sleep(0.05)
            total = time.perf_counter() - started
            await scheduler.stop()
        via = "rabbitmq" if amqp_url else "redis"
        print(f"{runs} runs via {via}, {workers} worker process(es) x concurrency {concurrency}: fired and queued in "
              f"{queued:.2f}s ({runs / queued:,.0f}/s); all recorded succeeded after {total:.2f}s "
              f"({runs / total:,.0f} runs/s)")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    args = parser.parse_args()
    with RedisServer() as server, tempfile.TemporaryDirectory() as workdir:
        if args.broker == "rabbitmq":
            from sts_rabbitmq.testing import RabbitServer

            with RabbitServer() as rabbit:
                asyncio.run(measure(server.url, args.runs, args.workers, args.concurrency, Path(workdir),
                                    rabbit.url()))
        else:
            asyncio.run(measure(server.url, args.runs, args.workers, args.concurrency, Path(workdir)))


if __name__ == "__main__":
    main()
