"""Every metric the plugin exports, defined in one registry per scheduler.

A registry of its own (never prometheus_client's global ``REGISTRY``) lets several schedulers
share a process, as tests do, without their series colliding. Labels are bounded: task names,
run states, loop names, broker names, plugin names, misfire policies, and error types capped
at ``MAX_ERROR_TYPES``; never run ids or error messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from sts_prometheus.collectors import HealthCollector, LastSuccess
from sts_prometheus.config import Settings

#: Distinct ``error_type`` label values kept per scheduler; later ones are counted as ``other``.
MAX_ERROR_TYPES = 20
#: The longest ``error_type`` label value; longer ones are cut.
MAX_ERROR_TYPE_LENGTH = 100
#: The ``sts_runs_total`` states every known task has a series for from the start, at 0. A
#: counter series that first appears at 1 shows no increase() in Prometheus, so without these
#: the first failure of a task would never alert.
PRESET_STATES = ("succeeded", "failed", "timed_out", "retrying", "poison")


@attrs.define
class Metrics:
    """The metric objects of one scheduler, all in ``registry``."""

    registry: CollectorRegistry
    runs: Counter
    run_duration: Histogram
    run_lateness: Histogram
    run_retries: Counter
    run_errors: Counter
    fires_missed: Counter
    threads_abandoned: Counter
    queue_runs: Gauge
    queue_sample_errors: Counter
    plugin_load_errors: Gauge
    last_success: LastSuccess
    #: Tasks whose series exist (see ``track``).
    tasks: set[str] = attrs.field(factory=set)
    #: Tracked tasks the last ``keep_only`` did not find.
    _missing: set[str] = attrs.field(factory=set)
    # The event thread (track, forget) and the sampler on the loop (keep_only) both change them.
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def track(self, task: str) -> None:
        """Give a task its zero-valued run and retry series (once), so its first failure counts
        as an increase."""
        if task in self.tasks:
            return
        with self._lock:
            self.tasks.add(task)
            for state in PRESET_STATES:
                self.runs.labels(task, state)
            self.run_retries.labels(task)

    def forget(self, task: str) -> None:
        """Drop every series of a removed task: tasks come and go, memory and scrapes must not grow."""
        with self._lock:
            self._forget(task)

    def _forget(self, task: str) -> None:
        self.tasks.discard(task)
        labels = {"task": task}
        for metric in (self.runs, self.run_duration, self.run_lateness, self.run_retries, self.run_errors,
                       self.fires_missed, self.threads_abandoned):
            metric.remove_by_labels(labels)
        self.last_success.forget(task)

    def keep_only(self, tasks: set[str]) -> None:
        """Track every task in ``tasks``; forget a tracked task missing from two calls in a row (the
        list may have been read just before another process added it)."""
        for task in tasks:
            self.track(task)
        with self._lock:
            missing = self.tasks - tasks
            for task in missing & self._missing:
                self._forget(task)
            self._missing = missing - self._missing


def build_metrics(settings: Settings, *, health: Callable[[], Any], backend: str, version: str) -> Metrics:
    """A fresh registry holding every STS metric; ``health`` is ``scheduler.health``, read at each scrape.

    With ``settings.process_metrics`` the registry also gets its own process (CPU, memory, open
    files), platform (Python version) and garbage-collector collectors, as prometheus_client's
    global registry has by default.
    """
    registry = CollectorRegistry()
    if settings.process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    registry.register(HealthCollector(health, backend=backend, version=version))
    last_success = LastSuccess()
    registry.register(last_success)
    return Metrics(
        registry=registry,
        runs=Counter(
            "sts_runs_total",
            "Runs by task and final state of the attempt: succeeded, failed, timed_out, retrying (failed, "
            "retried later), skipped, cancelled, interrupted, lost, duplicate, poison.",
            ["task", "state"],
            registry=registry,
        ),
        run_duration=Histogram(
            "sts_run_duration_seconds",
            "How long each attempt that executed took, whatever its outcome.",
            ["task"],
            buckets=settings.duration_buckets,
            registry=registry,
        ),
        run_lateness=Histogram(
            "sts_run_lateness_seconds",
            "How late the first attempt of each fire started: started_at - scheduled_for "
            "(queueing, a busy worker, jitter). Retries are not counted.",
            ["task"],
            buckets=settings.lateness_buckets,
            registry=registry,
        ),
        run_retries=Counter(
            "sts_run_retries_total",
            "Failed or timed-out attempts that will be retried.",
            ["task"],
            registry=registry,
        ),
        run_errors=Counter(
            "sts_run_errors_total",
            f"Attempts that ended in an error (failed, timed_out, retrying, lost, poison) by exception type; "
            f"at most {MAX_ERROR_TYPES} types per process, the rest as 'other'.",
            ["task", "error_type"],
            registry=registry,
        ),
        fires_missed=Counter(
            "sts_fires_missed_total",
            "Fires the misfire policy applied to (scheduler down or busy, clock jumped), by policy.",
            ["task", "policy"],
            registry=registry,
        ),
        threads_abandoned=Counter(
            "sts_threads_abandoned_total",
            "Pool threads abandoned because the task's synchronous function was still running when its run "
            "timed out or was cancelled (from the ThreadAbandoned event).",
            ["task"],
            registry=registry,
        ),
        queue_runs=Gauge(
            "sts_queue_runs",
            "Runs in the broker's queue by state (ready, delayed, leased, dead; 'queued' when the broker "
            "only reports its depth), sampled every prometheus.sample_interval.",
            ["broker", "state"],
            registry=registry,
        ),
        queue_sample_errors=Counter(
            "sts_queue_sample_errors_total",
            "Queue samples that failed or timed out (the queue gauges are dropped until one succeeds).",
            ["broker"],
            registry=registry,
        ),
        plugin_load_errors=Gauge(
            "sts_plugin_load_errors",
            "1 for each plugin that failed to load or register, 0 for the others (enabled or disabled).",
            ["plugin"],
            registry=registry,
        ),
        last_success=last_success,
    )


def bounded_error_type(seen: set[str], error_type: str) -> str:
    """``error_type`` as a label value: cut to ``MAX_ERROR_TYPE_LENGTH``; once ``MAX_ERROR_TYPES``
    distinct values are in ``seen`` (which this updates), any new one becomes ``other``."""
    value = error_type[:MAX_ERROR_TYPE_LENGTH]
    if value in seen:
        return value
    if len(seen) >= MAX_ERROR_TYPES:
        return "other"
    seen.add(value)
    return value
