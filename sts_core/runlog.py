"""The human-readable run log: one line when a run starts and one when it ends.

Lines carry structured fields in ``extra={"sts": {...}}`` so the JSON log format indexes them.
"""

from __future__ import annotations

import logging

from sts_core.durations import format_duration
from sts_core.run import FAILED_STATES, Run, RunState

log = logging.getLogger("sts.run")

_SYMBOL = {
    RunState.RUNNING: "▶",
    RunState.SUCCEEDED: "✔",
    RunState.FAILED: "✘",
    RunState.TIMED_OUT: "⏱",
    RunState.RETRYING: "↻",
    RunState.SKIPPED: "⤼",
    RunState.CANCELLED: "■",
    RunState.INTERRUPTED: "■",
    RunState.LOST: "?",
    RunState.DUPLICATE: "⧉",
    RunState.POISON: "☠",
}

_WITH_TRACEBACK = frozenset({RunState.FAILED, RunState.TIMED_OUT, RunState.RETRYING})
_WARN = frozenset({RunState.FAILED, RunState.TIMED_OUT, RunState.LOST, RunState.DUPLICATE, RunState.POISON})


def fields(run: Run) -> dict[str, object]:
    """The structured fields of a run event: the run record's own values (``task`` and ``run_id``
    are its ``task_name`` and ``id``), with the traceback only when an attempt failed."""
    entry: dict[str, object] = {
        "task": run.task_name,
        "run_id": run.id,
        "attempt": run.attempt,
        "state": run.state.value,
        "version": run.task_version,
        "fire_id": run.fire_id,
        "scheduled_for": run.scheduled_for,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration": run.duration,
        "error_type": run.error_type,
        "error_message": run.error_message,
        "reason": run.reason,
        "worker": run.worker,
        "retry_at": run.retry_at,
    }
    if run.traceback and run.state in _WITH_TRACEBACK:
        entry["traceback"] = run.traceback
    return entry


def log_run(run: Run) -> None:
    """Log the run's current state at a level that fits it (nothing is built when that level is off)."""
    state = run.state
    level = logging.WARNING if state in _WARN else logging.INFO
    if not log.isEnabledFor(level):
        return
    if state is RunState.RUNNING:
        text = f"{_SYMBOL[state]} {run.task_name} attempt {run.attempt} started"
        if run.reason not in ("schedule", "retry"):
            text += f" ({run.reason})"
    else:
        outcome = "failed" if state is RunState.RETRYING else state.value
        text = f"{_SYMBOL.get(state, '·')} {run.task_name} attempt {run.attempt} {outcome}"
        if run.duration is not None:
            text += f" in {format_duration(run.duration)}"
        if run.error_type:
            text += f": {run.error_type}: {run.error_message}"
        if state is RunState.RETRYING and run.retry_at is not None:
            text += f"; attempt {run.attempt + 1} at {run.retry_at.strftime('%H:%M:%S.%f')[:-3]}"
        unstarted = state in (RunState.SKIPPED, RunState.CANCELLED) and run.started_at is None
        if unstarted or state in _WARN - FAILED_STATES:
            text += f" ({run.reason})"
    log.log(level, text, extra={"sts": fields(run)})
