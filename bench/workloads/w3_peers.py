"""W3's task definitions: one no-op per system, for the worker processes to import by path.

    python -m workloads.w3_peers bare CONCURRENCY    # the bare redis-py worker (no framework)

Every W3 worker is one process started with ``W3_REDIS_URL``, ``W3_RUNS`` and ``W3_CONCURRENCY``
in its environment. Each no-op only counts its run in that process (no I/O); the run that brings
the count to ``W3_RUNS`` pushes onto the Redis list ``w3:done``, once, and the producer blocks
on that list (BLPOP). A ``ready`` task, run once before the clock starts, pushes onto
``w3:ready`` in the same way. So detecting completion costs every system the same: one round
trip in all, none per run. It needs every run of a system to execute in the one worker process
(W3 picks pools that do: threads, asyncio, RQ's SimpleWorker, one Dramatiq or Taskiq child).

A library's objects (Celery app, Dramatiq broker, Huey, arq settings, Taskiq broker) are built
on first access (``__getattr__`` below), so each process imports only the library it uses.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
from typing import Any

URL = os.environ.get("W3_REDIS_URL", "redis://127.0.0.1:6379/0")
TOTAL = int(os.environ.get("W3_RUNS", "0"))
CONCURRENCY = int(os.environ.get("W3_CONCURRENCY", "1"))
DONE_KEY = "w3:done"
READY_KEY = "w3:ready"
STREAM, GROUP = "w3:stream", "w3"

_runs = itertools.count(1)  # next() on it is atomic under the GIL: safe from pool threads
HUEY_TASKS: dict[str, Any] = {}  # Huey's task wrappers, filled when ``huey`` is first accessed


def signal(key: str) -> None:
    """Push one item onto the list ``key`` (a single round trip)."""
    import redis

    client = redis.Redis.from_url(URL)
    try:
        client.rpush(key, 1)
    finally:
        client.close()


def count() -> None:
    """The no-op's whole body: count this run; the last one says so on ``w3:done``."""
    if next(_runs) == TOTAL:
        signal(DONE_KEY)


def ready() -> None:
    """The warm-up task's body: the worker is up and runs tasks."""
    signal(READY_KEY)


# -- STS (functions referenced as "workloads.w3_peers:sts_noop") ------------------------------------


async def sts_noop() -> None:
    count()


async def sts_ready() -> None:
    ready()


# -- RQ (functions referenced as "workloads.w3_peers.rq_noop") --------------------------------------


def rq_noop() -> None:
    count()


def rq_ready() -> None:
    ready()


# -- arq (worker: ``arq workloads.w3_peers.ArqSettings``) -------------------------------------------


async def arq_noop(ctx: dict) -> None:
    count()


async def arq_ready(ctx: dict) -> None:
    ready()


# -- libraries built on first access ----------------------------------------------------------------


@functools.cache
def _celery() -> Any:
    from celery import Celery

    app = Celery("w3", broker=URL, set_as_current=True)
    app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)
    app.task(name="w3.noop")(count)
    app.task(name="w3.ready")(ready)
    return app


@functools.cache
def _dramatiq() -> Any:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=URL)
    dramatiq.set_broker(broker)
    dramatiq.actor(count, actor_name="w3_noop", broker=broker)
    dramatiq.actor(ready, actor_name="w3_ready", broker=broker)
    return broker


@functools.cache
def _huey() -> Any:
    from huey import RedisHuey

    huey = RedisHuey("w3", url=URL)  # blocking=True: workers wait with BRPOP, no polling
    HUEY_TASKS.update(noop=huey.task(name="w3_noop")(count), ready=huey.task(name="w3_ready")(ready))
    return huey


@functools.cache
def _arq_settings() -> type:
    from arq.connections import RedisSettings

    class ArqSettings:
        functions = [arq_noop, arq_ready]
        redis_settings = RedisSettings.from_dsn(URL)
        max_jobs = CONCURRENCY
        # arq has no blocking read: it polls every poll_delay (default 0.5 s) and starts at most max_jobs
        # jobs per poll, so by default arq@c1 runs 2 jobs/s. 0 is a busy poll: arq at its fastest.
        poll_delay = 0

    return ArqSettings


@functools.cache
def _taskiq() -> Any:
    import taskiq.compat

    # taskiq-redis 1.0.9's package __init__ imports two helpers that taskiq 0.13 dropped from taskiq.compat
    # (used only by its schedule sources, not by the broker): put pydantic 2 equivalents back.
    if not hasattr(taskiq.compat, "model_dump"):
        taskiq.compat.model_dump = lambda model, **kwargs: model.model_dump(**kwargs)
        taskiq.compat.model_validate = lambda model_class, data: model_class.model_validate(data)
    from taskiq_redis import RedisStreamBroker

    broker = RedisStreamBroker(url=URL)  # streams + consumer group: acknowledged, as STS is

    async def noop() -> None:
        count()

    async def warm() -> None:
        ready()

    broker.task(task_name="w3_noop")(noop)
    broker.task(task_name="w3_ready")(warm)
    return broker


_LAZY = {
    "celery_app": _celery,
    "dramatiq_broker": _dramatiq,
    "huey": _huey,
    "ArqSettings": _arq_settings,
    "taskiq_broker": _taskiq,
}


def __getattr__(name: str) -> Any:
    """Build a library's objects when a worker CLI (or the producer) first asks for them."""
    if name in _LAZY:
        return _LAZY[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the bare baseline: a stream, a consumer group, no framework ------------------------------------


def bare_worker(concurrency: int) -> None:
    """Read up to ``concurrency`` entries (XREADGROUP), run each, ack them in one XACK; forever."""
    import json

    import redis

    client = redis.Redis.from_url(URL)
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    functions = {"noop": count, "ready": ready}
    while True:
        answer = client.xreadgroup(GROUP, "worker", {STREAM: ">"}, count=concurrency, block=1000)
        for _stream, entries in answer:
            for _id, fields in entries:
                functions[json.loads(fields[b"job"])["f"]]()
            client.xack(STREAM, GROUP, *(entry_id for entry_id, _ in entries))


if __name__ == "__main__":
    if sys.argv[1:2] != ["bare"] or len(sys.argv) != 3:
        sys.exit("usage: python -m workloads.w3_peers bare CONCURRENCY")
    bare_worker(int(sys.argv[2]))
