"""Typed events passed to the ``handle_event`` hook.

One hook receives every event; a plugin picks the classes it cares about with
``isinstance``. Adding an event class changes no hook specification.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import attrs

from sts_core.run import Run
from sts_core.task import Task


@attrs.frozen
class Event:
    """Base of all events. ``kind`` is a stable dotted name for logs and metrics."""

    kind: ClassVar[str] = "event"
    time: datetime


@attrs.frozen
class SchedulerStarted(Event):
    """The scheduler's loops are running."""

    kind: ClassVar[str] = "scheduler.started"
    scheduler_id: str


@attrs.frozen
class SchedulerStopping(Event):
    """The scheduler has begun a graceful stop."""

    kind: ClassVar[str] = "scheduler.stopping"
    scheduler_id: str


@attrs.frozen
class TaskAdded(Event):
    """A task was stored (``task.version`` says which version)."""

    kind: ClassVar[str] = "task.added"
    task: Task


@attrs.frozen
class TaskRemoved(Event):
    """A task was removed (or cancelled)."""

    kind: ClassVar[str] = "task.removed"
    task_name: str


@attrs.frozen
class RunEvent(Event):
    """Base of events about one run; ``run`` is a snapshot taken when the event happened."""

    run: Run
    task: Task | None = None
    #: True when a worker completes a run whose previous worker recorded the outcome but was
    #: lost before acknowledging it: the event may have been emitted already by that worker.
    #: Alerts should still go out (none is lost); counters should skip it.
    repeated: bool = False


@attrs.frozen
class RunStarted(RunEvent):
    """An attempt started executing."""

    kind: ClassVar[str] = "run.started"


@attrs.frozen
class RunSucceeded(RunEvent):
    """An attempt succeeded."""

    kind: ClassVar[str] = "run.succeeded"


@attrs.frozen
class RunRetrying(RunEvent):
    """An attempt failed or timed out and another attempt is scheduled at ``run.retry_at``."""

    kind: ClassVar[str] = "run.retrying"


@attrs.frozen
class RunFailed(RunEvent):
    """A run failed for good (``run.state`` is ``failed`` or ``timed_out``)."""

    kind: ClassVar[str] = "run.failed"


@attrs.frozen
class RunSkipped(RunEvent):
    """A run did not execute; ``run.reason`` says why (upstream failed, max instances, ...)."""

    kind: ClassVar[str] = "run.skipped"


@attrs.frozen
class RunCancelled(RunEvent):
    """A run was cancelled, or interrupted by a shutdown (``run.state`` says which)."""

    kind: ClassVar[str] = "run.cancelled"


@attrs.frozen
class RunLost(RunEvent):
    """The worker running this attempt was lost (crashed, or stalled past its lease) before it
    recorded an outcome; the run was delivered again as a new attempt (``run.state`` is ``lost``)."""

    kind: ClassVar[str] = "run.lost"


@attrs.frozen
class RunDuplicate(RunEvent):
    """An attempt finished after its lease was lost, so another worker was given the run too; its
    outcome is recorded as ``duplicate`` and nothing follows from it (no retry, no dependents)."""

    kind: ClassVar[str] = "run.duplicate"


@attrs.frozen
class FireMissed(Event):
    """The misfire policy applied: a fire was later than the grace time, or several fires of a
    task were due at once (scheduler down or busy, wall clock moved forward)."""

    kind: ClassVar[str] = "fire.missed"
    task_name: str
    first_missed: datetime
    missed_count: int
    policy: str
    task: Task | None = None


@attrs.frozen
class ThreadAbandoned(Event):
    """A run's synchronous function was still running when its run ended (timed out or was
    cancelled): Python cannot stop a thread, so the thread pool abandoned it.

    ``abandoned_threads`` counts the abandoned functions still running, this one included. While
    it is at most ``max_abandoned_threads`` (config ``executor.max_abandoned_threads``) the pool
    starts a replacement (``replaced``) and keeps ``executor.max_workers`` usable threads; past
    it, synchronous runs wait for the threads left.
    """

    kind: ClassVar[str] = "thread.abandoned"
    task_name: str
    run_id: str
    abandoned_threads: int
    max_abandoned_threads: int
    replaced: bool
