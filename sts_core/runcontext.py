"""Which run is executing: ``current_run()`` for task functions that want their run's id or attempt.

The engine sets a ``ContextVar`` around each attempt, so a coroutine task, and a synchronous
task in the thread pool (it runs in a copy of the context), see their own run. A task run
with ``executor: process`` runs in another interpreter and sees None.
"""

from __future__ import annotations

import contextvars

import attrs

from sts_core.run import Run

_current: contextvars.ContextVar[Run | None] = contextvars.ContextVar("sts_current_run", default=None)


def current_run() -> Run | None:
    """A copy of the run executing in this context (id, task_name, attempt, scheduled_for, ...), or None."""
    run = _current.get()
    return None if run is None else attrs.evolve(run)


def set_current_run(run: Run | None) -> contextvars.Token[Run | None]:
    """Mark ``run`` as executing in this context (the engine calls it); returns the token to reset."""
    return _current.set(run)


def reset_current_run(token: contextvars.Token[Run | None]) -> None:
    """Undo ``set_current_run``."""
    _current.reset(token)
