"""Metrics read when Prometheus scrapes: the scheduler's health, and each task's last success.

Both run in the HTTP server's threads: ``HealthCollector`` calls ``scheduler.health()``, which
the kernel makes cheap and safe from any thread; ``LastSuccess`` holds its own data under a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("sts.prometheus")


class HealthCollector(Collector):
    """``sts_scheduler_running``, ``sts_runs_in_flight``, ``sts_scheduler_heartbeat_timestamp_seconds``,
    ``sts_backend_unavailable``, ``sts_task_unloadable``, ``sts_abandoned_threads``,
    ``sts_runs_waiting_for_thread`` and ``sts_scheduler_info``, from ``health()`` at each scrape."""

    def __init__(self, health: Callable[[], Any], *, backend: str, version: str) -> None:
        self._health = health
        self._backend = backend
        self._version = version

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The families, or none when ``health()`` fails (logged at debug level)."""
        try:
            health = self._health()
        except Exception as exc:  # noqa: BLE001 - a scrape must still serve the other metrics
            log.debug("scheduler.health() failed during a scrape: %s", exc)
            return
        running = GaugeMetricFamily("sts_scheduler_running", "1 while this scheduler process is started, else 0.")
        running.add_metric([], 1.0 if health.running else 0.0)
        in_flight = GaugeMetricFamily(
            "sts_runs_in_flight", "Runs executing in this process now (sampled from health() at scrape time)."
        )
        in_flight.add_metric([], float(health.runs_in_flight))
        beats = GaugeMetricFamily(
            "sts_scheduler_heartbeat_timestamp_seconds",
            "When each loop of this process (scheduler, worker) was last seen alive, as Unix time.",
            labels=["loop"],
        )
        for loop, when in sorted(health.beats.items()):
            beats.add_metric([loop], _timestamp(when))
        unavailable = GaugeMetricFamily(
            "sts_backend_unavailable", "1 while this process cannot reach its backend (store or broker), else 0."
        )
        unavailable.add_metric([], 1.0 if health.backend_unavailable else 0.0)
        problems = GaugeMetricFamily(
            "sts_task_unloadable",
            "1 for each stored task this process cannot fire or run (its trigger, task type or function is "
            "missing here); its runs are recorded failed with the reason.",
            labels=["task"],
        )
        for task in sorted(health.task_problems):
            problems.add_metric([task], 1.0)
        abandoned = GaugeMetricFamily(
            "sts_abandoned_threads",
            "Synchronous functions still running after their run timed out or was cancelled (their pool "
            "threads are abandoned, and replaced up to executor.max_abandoned_threads).",
        )
        abandoned.add_metric([], float(health.abandoned_threads))
        waiting = GaugeMetricFamily(
            "sts_runs_waiting_for_thread",
            "Synchronous calls waiting for a free pool thread now (their timeouts have not started).",
        )
        waiting.add_metric([], float(health.waiting_for_thread))
        info = GaugeMetricFamily(
            "sts_scheduler_info",
            "Always 1; labels say which scheduler process this is (scheduler_id changes at each start).",
            labels=["scheduler_id", "roles", "backend", "version"],
        )
        info.add_metric([health.scheduler_id, ",".join(health.roles), self._backend, self._version], 1.0)
        yield from (running, in_flight, beats, unavailable, problems, abandoned, waiting, info)


class LastSuccess(Collector):
    """``sts_task_last_success_timestamp_seconds{task}``: the newest success known per task.

    ``record`` keeps the later of two times, so history loaded at start never overwrites a
    success reported by an event meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, float] = {}

    def record(self, task: str, when: datetime) -> None:
        """Note a success of ``task`` that ended at ``when``."""
        stamp = _timestamp(when)
        with self._lock:
            if stamp > self._times.get(task, float("-inf")):
                self._times[task] = stamp

    def forget(self, task: str) -> None:
        """Drop the series of a removed task (else a "has not succeeded" alert would fire forever)."""
        with self._lock:
            self._times.pop(task, None)

    def keep_only(self, tasks: set[str]) -> None:
        """Drop the series of every task not in ``tasks`` (removed elsewhere)."""
        with self._lock:
            for task in [task for task in self._times if task not in tasks]:
                del self._times[task]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One family with a sample per task that has succeeded."""
        family = GaugeMetricFamily(
            "sts_task_last_success_timestamp_seconds",
            "When the task's newest known successful run ended, as Unix time "
            "(from the run history at start, then from this process's runs).",
            labels=["task"],
        )
        with self._lock:
            items = sorted(self._times.items())
        for task, stamp in items:
            family.add_metric([task], stamp)
        yield family


def _timestamp(when: datetime) -> float:
    return when.timestamp()
