"""A snapshot of how one scheduler process is doing, for metrics, health checks and the API."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import attrs


@attrs.frozen
class Health:
    """What ``AsyncTaskScheduler.health()`` reports about this process.

    ``beats`` maps each loop running here (``scheduler``, ``worker``) to the last time it was seen
    alive, by the scheduler's clock. The scheduler loop beats at least every 30 seconds while it
    waits for the next due fire; the worker loop at least every few seconds, busy or idle. A beat
    much older than that means the loop is stuck (or the event loop is blocked).

    ``task_problems`` maps each stored task this process cannot fire or run (its trigger kind,
    task type or function is missing here) to the reason; such a task stays scheduled and its
    runs are recorded failed with that reason.

    ``abandoned_threads`` counts the synchronous functions still running after their run ended
    (timed out or cancelled): Python cannot stop them, so their threads were abandoned, and
    replaced while at most ``executor.max_abandoned_threads`` are. ``waiting_for_thread`` counts
    the synchronous calls waiting for a free pool thread now (their timeouts have not started).
    Both stay above zero when the pool is full of hung functions.
    """

    running: bool
    scheduler_id: str
    roles: tuple[str, ...]
    runs_in_flight: int
    beats: Mapping[str, datetime]
    backend_unavailable: bool
    task_problems: Mapping[str, str] = attrs.field(factory=dict)
    abandoned_threads: int = 0
    waiting_for_thread: int = 0
