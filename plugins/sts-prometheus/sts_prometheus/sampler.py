"""Periodic sampling on the scheduler's event loop: what only a coroutine can read.

Every ``sample_interval`` (by the scheduler's clock, so a ``FakeClock`` drives it in tests) the
sampler reads the broker's queue counts and the plugins' load status, each step bounded by a
timeout of one interval, so a slow backend delays nothing else and samples never pile up.
About once a minute it also reconciles the last-success series with the stored tasks: a task
seen for the first time gets its newest successful run from the history (so the metric
survives restarts), and a task removed (by any process) loses its series.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sts.plugin import SchedulerView
from sts_prometheus.metrics import Metrics

log = logging.getLogger("sts.prometheus")
T = TypeVar("T")

#: How often (seconds, by the scheduler's clock) the last-success series are reconciled with the tasks.
TASKS_EVERY = 60.0
_QUEUE_STATES = ("ready", "delayed", "leased", "dead")


class Sampler:
    """Samples one scheduler's queue and plugins into ``metrics`` until ``stop``."""

    def __init__(self, scheduler: SchedulerView, metrics: Metrics, *, interval: float, broker_label: str) -> None:
        self._scheduler = scheduler
        self._metrics = metrics
        self._interval = interval
        self._broker_label = broker_label
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._looked_up: set[str] = set()  # tasks whose last success was read from the history
        self._tasks_due = float("-inf")  # monotonic time of the next reconciliation
        self._failing: set[str] = set()  # steps that failed last time (logged once until they recover)

    def start(self) -> None:
        """Start sampling in a task on the running loop (a first sample right away)."""
        self._stop.clear()
        self._task = asyncio.create_task(self._loop(), name="sts-prometheus-sampler")

    async def stop(self) -> None:
        """Stop sampling and wait for the current sample to end."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        clock = self._scheduler.clock
        while not self._stop.is_set():
            await self.sample()
            await clock.wait(self._stop, self._interval)

    async def sample(self) -> None:
        """Take one sample of everything now (also what tests call instead of waiting)."""
        await self._step("queue", self._sample_queue)
        await self._step("plugins", self._sample_plugins)
        now = self._scheduler.clock.monotonic()
        if now >= self._tasks_due:
            self._tasks_due = now + TASKS_EVERY
            await self._step("tasks", self._reconcile_tasks)

    async def _step(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - sampling must never take the scheduler down
            if name == "queue":
                self._metrics.queue_runs.clear()  # no stale depth: absent until a sample succeeds
                self._metrics.queue_sample_errors.labels(self._broker_label).inc()
            if name not in self._failing:
                self._failing.add(name)
                reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
                log.warning("sampling the %s for metrics failed (%s); retrying every %gs",
                            name, reason, self._interval)
            return
        if name in self._failing:
            self._failing.discard(name)
            log.warning("sampling the %s for metrics works again", name)

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        return await asyncio.wait_for(awaitable, self._interval)

    async def _sample_queue(self) -> None:
        counts = await self._bounded(self._scheduler.queue_counts())
        if counts is not None:
            states = {state: counts.get(state, 0) for state in _QUEUE_STATES}
        else:
            states = {"queued": await self._bounded(self._scheduler.queue_depth())}
        gauge = self._metrics.queue_runs
        for state, count in states.items():
            gauge.labels(self._broker_label, state).set(count)

    async def _sample_plugins(self) -> None:
        gauge = self._metrics.plugin_load_errors
        for info in self._scheduler.plugins.plugin_infos():
            gauge.labels(info.name).set(1 if info.status == "failed" else 0)

    async def _reconcile_tasks(self) -> None:
        names = {task.name for task in await self._bounded(self._scheduler.list_tasks())}
        self._metrics.keep_only(names)
        last_success = self._metrics.last_success
        self._looked_up &= names
        for name in sorted(names - self._looked_up):
            runs = await self._bounded(self._scheduler.runs(name, state="succeeded", limit=1))
            self._looked_up.add(name)
            if runs and runs[0].ended_at is not None:
                last_success.record(name, runs[0].ended_at)
