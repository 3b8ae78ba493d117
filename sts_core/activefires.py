"""The fires this process dispatched whose runs are not over yet, so that ``wait_idle`` knows when
everything queued here has run. (The store counts active fires across processes, for
``max_instances``; this is the local view.)"""

from __future__ import annotations

import asyncio
from typing import Any

from sts_core.run import Run
from sts_core.steps import Retrying


class ActiveFires:
    """Fire ids by task name, dispatched here and not over yet, and the ``idle`` event set
    while there are none.

    Given the store (``release`` ends a fire there too) and ``retrying``, which takes that step
    through a backend outage. ``local`` is False in a process without a worker: it never sees its
    runs end, so it does not track them.
    """

    def __init__(self, store: Any, retrying: Retrying) -> None:
        self._store = store
        self._retrying = retrying
        self.local = True
        # task -> the id of its one fire active here, or a set of them when several (a set per
        # fire would be one more object per run for the garbage collector to follow)
        self.by_task: dict[str, str | set[str]] = {}
        self.idle = asyncio.Event()
        self.idle.set()

    def bind_to_loop(self) -> None:
        """A new ``idle`` event for the loop the engine starts on (an event belongs to one loop)."""
        self.idle = asyncio.Event()
        if not self.by_task:
            self.idle.set()

    def started(self, task_name: str, fire: str) -> None:
        """A fire of ``task_name`` was dispatched here."""
        if self.local:
            by_task = self.by_task
            active = by_task.get(task_name)
            if active is None:
                by_task[task_name] = fire
            elif isinstance(active, str):
                if active != fire:
                    by_task[task_name] = {active, fire}
            else:
                active.add(fire)
            self.idle.clear()

    async def release(self, run: Run) -> None:
        """The fire of ``run`` is over (no further attempt): it no longer counts as active, in the
        store (towards ``max_instances``) nor here."""
        fire = run.fire_id
        if fire is not None:
            store = self._store
            await self._retrying(f"ending fire {fire}", lambda: store.end_fire(run.task_name, fire))
        self.forget(run)

    def forget(self, run: Run) -> None:
        """The fire of ``run`` is over here (the store was told, or need not be)."""
        active = self.by_task.get(run.task_name)
        if isinstance(active, str):
            if active == run.fire_id:
                del self.by_task[run.task_name]
        elif active is not None:
            active.discard(run.fire_id)  # type: ignore[arg-type]
            if not active:
                del self.by_task[run.task_name]
        if not self.by_task:
            self.idle.set()

    def forget_task(self, name: str) -> None:
        """The task was removed: its fires no longer count."""
        self.by_task.pop(name, None)
        if not self.by_task:
            self.idle.set()
