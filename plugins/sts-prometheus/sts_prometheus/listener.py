"""Turns the kernel's events into metric updates. Runs on the scheduler's event thread: every
update is a counter, histogram or dict change under a lock, so it never blocks."""

from __future__ import annotations

import threading

from sts.plugin import RunState
from sts.plugin import events as ev
from sts_prometheus.metrics import Metrics, bounded_error_type

#: Final states whose attempt ended in an error, counted in ``sts_run_errors_total``.
ERROR_STATES = frozenset(
    {RunState.FAILED, RunState.TIMED_OUT, RunState.RETRYING, RunState.LOST, RunState.POISON}
)


class MetricsListener:
    """Updates one scheduler's ``Metrics`` from its events.

    - ``RunStarted`` of a first attempt: lateness (``started_at - scheduled_for``, at least 0).
      Retries are left out: their ``scheduled_for`` is the original fire's, so their lateness
      would be the backoff, not the scheduler's delay.
    - every other run event with a final state (succeeded, retrying, failed, timed_out, poison,
      skipped, cancelled, interrupted, lost, duplicate): ``sts_runs_total{task,state}``, the
      duration when the attempt executed, retries, error types, and the last success time.
    - ``FireMissed``: ``sts_fires_missed_total`` by ``missed_count``.
    - ``ThreadAbandoned``: ``sts_threads_abandoned_total``.
    - ``TaskAdded`` and the first run event of a task: its zero-valued series (``Metrics.track``).
    - ``TaskRemoved``: every series of the task is dropped.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._error_types: set[str] = set()
        self._lock = threading.Lock()

    def handle(self, event: ev.Event) -> None:
        """Apply one event."""
        if isinstance(event, ev.RunStarted):
            self._started(event)
        elif isinstance(event, ev.RunEvent):
            self._ended(event)
        elif isinstance(event, ev.FireMissed):
            self._metrics.fires_missed.labels(event.task_name, event.policy).inc(max(event.missed_count, 0))
        elif isinstance(event, ev.ThreadAbandoned):
            self._metrics.threads_abandoned.labels(event.task_name).inc()
        elif isinstance(event, ev.TaskAdded):
            self._metrics.track(event.task.name)
        elif isinstance(event, ev.TaskRemoved):
            self._metrics.forget(event.task_name)

    def _started(self, event: ev.RunStarted) -> None:
        run = event.run
        if run.attempt != 1 or run.started_at is None:
            return
        lateness = (run.started_at - run.scheduled_for).total_seconds()
        self._metrics.run_lateness.labels(run.task_name).observe(max(lateness, 0.0))

    def _ended(self, event: ev.RunEvent) -> None:
        run = event.run
        state = RunState(run.state)
        if not state.is_final or event.repeated:  # a repeat: the lost worker may have counted it
            return
        metrics = self._metrics
        task = run.task_name
        metrics.track(task)
        metrics.runs.labels(task, state.value).inc()
        if run.duration is not None:
            metrics.run_duration.labels(task).observe(max(run.duration, 0.0))
        if state is RunState.RETRYING:
            metrics.run_retries.labels(task).inc()
        if state in ERROR_STATES and run.error_type:
            with self._lock:  # one event thread per scheduler today; the lock keeps the cap exact anyway
                error_type = bounded_error_type(self._error_types, run.error_type)
            metrics.run_errors.labels(task, error_type).inc()
        if state is RunState.SUCCEEDED and run.ended_at is not None:
            metrics.last_success.record(task, run.ended_at)
