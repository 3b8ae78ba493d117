"""W4 helpers: the task function each system runs, the peers' apps, and the rq-scheduler launcher.

Every task execution calls ``record`` first thing: it appends one JSON line ``{"task", "start",
"scheduled"}`` to ``$W4_RECORDS/<pid>.jsonl`` (one file per process, so forked pool children
never share a descriptor). ``start`` is ``time.time()`` at function entry; ``scheduled`` is the
fire time the library itself says it intended (epoch seconds), or null where it does not say.

The peers' apps are built on first attribute access (PEP 562), from ``$W4_REDIS_URL`` and
``$W4_TASKS``, so importing this module in an STS worker does not import Celery, Taskiq or arq:

* ``celery_app`` (``celery -A workloads.w4_peers:celery_app beat|worker``),
* ``taskiq_broker`` and ``taskiq_scheduler`` (``taskiq worker|scheduler workloads.w4_peers:...``),
* ``ArqSettings`` (``arq workloads.w4_peers.ArqSettings``).

``python -m workloads.w4_peers rq-scheduler URL`` runs rq-scheduler's own loop (``Scheduler.run``,
polling every second) started 10 ms after a whole second, so its polls are aligned to the
whole-second fire times; ``rqscheduler`` from the command line would poll at a random phase.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

_files: dict[int, int] = {}


def record(task: str, start: float, scheduled: float | None = None, **extra: float | None) -> None:
    """Append one execution to this process's records file (opened on first use after a fork);
    ``extra`` fields are kept for diagnosis."""
    pid = os.getpid()
    fd = _files.get(pid)
    if fd is None:
        path = os.path.join(os.environ["W4_RECORDS"], f"{pid}.jsonl")
        fd = _files[pid] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    line = json.dumps({"task": task, "start": start, "scheduled": scheduled, **extra}) + "\n"
    os.write(fd, line.encode())


def task_names() -> list[str]:
    """``t000`` ... ``t099``: the names of the periodic tasks (``$W4_TASKS`` of them)."""
    return [f"t{i:03d}" for i in range(int(os.environ.get("W4_TASKS", "100")))]


# --- STS and rq: plain functions ------------------------------------------------------------------


async def sts_tick() -> None:
    """The STS task: its run says which task it is and the time it was scheduled for."""
    start = time.time()
    from sts.task import current_run

    run = current_run()
    assert run is not None
    # when the scheduler created the run and when the worker marked it started, for diagnosis
    record(run.task_name, start, run.scheduled_for.timestamp(),
           created=run.created_at and run.created_at.timestamp(), started=run.started_at and run.started_at.timestamp())


def rq_tick(task: str) -> None:
    """The rq-scheduler job (rq does not tell a job when it was scheduled for)."""
    record(task, time.time())


# --- Celery, Taskiq and arq: apps built on first use ----------------------------------------------


def _celery_app() -> Any:
    from celery import Celery
    from celery.schedules import schedule

    app = Celery("w4", broker=os.environ["W4_REDIS_URL"])
    app.conf.update(
        timezone="UTC", task_ignore_result=True, worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # relative=True rounds each next run down to the whole second: fires stay on the
        # whole-second grid instead of drifting by each fire's lateness.
        beat_schedule={name: {"task": "w4.tick", "schedule": schedule(timedelta(seconds=1), relative=True),
                              "args": (name,)} for name in task_names()},
    )

    @app.task(name="w4.tick")
    def tick(task: str) -> None:
        record(task, time.time())

    return app


def _taskiq() -> tuple[Any, Any]:
    import taskiq.compat

    if not hasattr(taskiq.compat, "model_dump"):
        # taskiq-redis 1.0.9 imports two pydantic shims that taskiq 0.13 removed; only its schedule
        # sources and result backends use them, not the broker used here.
        taskiq.compat.model_dump = lambda model: model.model_dump()
        taskiq.compat.model_validate = lambda cls, data: cls.model_validate(data)
    from taskiq import TaskiqScheduler
    from taskiq.schedule_sources import LabelScheduleSource
    from taskiq_redis import ListQueueBroker

    broker = ListQueueBroker(os.environ["W4_REDIS_URL"])
    schedules = [{"interval": 1, "args": [name], "schedule_id": name} for name in task_names()]

    @broker.task(task_name="w4.tick", schedule=schedules)
    async def tick(task: str) -> None:
        record(task, time.time())

    return broker, TaskiqScheduler(broker, sources=[LabelScheduleSource(broker)])


def _arq_settings() -> type:
    from arq import cron
    from arq.connections import RedisSettings

    async def tick(ctx: dict[str, Any]) -> None:
        start = time.time()
        # a unique cron job's id is "<name>:<scheduled time in ms>"
        name, millis = ctx["job_id"].rsplit(":", 1)
        record(name, start, int(millis) / 1000)

    class ArqSettings:
        redis_settings = RedisSettings.from_dsn(os.environ["W4_REDIS_URL"])
        cron_jobs = [cron(tick, name=name, second=set(range(60)), unique=True) for name in task_names()]
        functions: list[Any] = []

    return ArqSettings


_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """Build ``celery_app``, ``taskiq_broker``/``taskiq_scheduler`` or ``ArqSettings`` on first use."""
    if name not in _built:
        if name == "celery_app":
            _built[name] = _celery_app()
        elif name in ("taskiq_broker", "taskiq_scheduler"):
            _built["taskiq_broker"], _built["taskiq_scheduler"] = _taskiq()
        elif name == "ArqSettings":
            _built[name] = _arq_settings()
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _built[name]


# --- rq-scheduler, started on the whole second ---------------------------------------------------


def schedule_rq(url: str, first: float) -> None:
    """Schedule every task with rq-scheduler: every second (``interval=1``), the first at ``first``."""
    from redis import Redis
    from rq_scheduler import Scheduler

    scheduler = Scheduler(connection=Redis.from_url(url))
    when = datetime.fromtimestamp(first, UTC).replace(tzinfo=None)  # rq-scheduler wants naive UTC
    for name in task_names():
        scheduler.schedule(scheduled_time=when, func=rq_tick, args=[name], interval=1, repeat=None, id=name)


def run_rq_scheduler(url: str) -> None:
    """rq-scheduler's own loop, polling every second, 10 ms after each whole second."""
    from redis import Redis
    from rq_scheduler import Scheduler

    scheduler = Scheduler(connection=Redis.from_url(url), interval=1)
    time.sleep(1.01 - time.time() % 1)
    scheduler.run()


if __name__ == "__main__":
    if sys.argv[1:2] == ["rq-scheduler"] and len(sys.argv) == 3:
        run_rq_scheduler(sys.argv[2])
    else:
        sys.exit("usage: python -m workloads.w4_peers rq-scheduler REDIS_URL")
