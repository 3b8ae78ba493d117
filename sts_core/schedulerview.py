"""``SchedulerView``: the scheduler as a plugin's hooks see it.

The lifecycle hooks (``scheduler_started``, ``scheduler_stopping``, ``scheduler_stopped``) and
``handle_event`` receive the scheduler that calls them. This Protocol is what a plugin may read
of it: its identity and settings, whether it runs, its health, and a few reads of its tasks,
runs and backend. A plugin never reaches into the backend itself, so a backend can change
without breaking plugins. ``AsyncTaskScheduler`` satisfies it; a test may pass any object
that does.

Threads: ``id``, ``config``, ``clock``, ``plugins``, ``running``, ``shared_backend`` and
``health()`` may be read from any thread (``handle_event`` runs on the scheduler's event
thread). The coroutines must run on the scheduler's event loop, as ``scheduler_started`` and
the tasks it starts do.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sts_core.clock import Clock
    from sts_core.config import Config
    from sts_core.health import Health
    from sts_core.plugins import PluginManager
    from sts_core.run import Run, RunState
    from sts_core.task import Task


class SchedulerView(Protocol):
    """What a plugin's hooks may read of the scheduler that calls them (see the module docs)."""

    @property
    def id(self) -> str:
        """This scheduler's id, unique in the process (it tells apart the schedulers of one process)."""

    @property
    def config(self) -> Config:
        """The scheduler's configuration (read it; do not change it)."""

    @property
    def clock(self) -> Clock:
        """The scheduler's clock: take every time and do every wait through it (tests fake it)."""

    @property
    def plugins(self) -> PluginManager:
        """The scheduler's plugin manager (``plugin_infos()`` lists the installed plugins)."""

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""

    @property
    def shared_backend(self) -> bool:
        """True when the backend is shared between processes (such as redis): other processes
        see and change the same tasks and runs."""

    def health(self) -> Health:
        """How this process is doing; cheap, and safe from any thread."""

    async def check_backend(self) -> None:
        """Ask the backend a cheap question; raises what the backend raised when it cannot answer."""

    async def queue_counts(self) -> dict[str, int] | None:
        """Runs in the broker by state (``ready``, ``delayed``, ``leased``, ``dead``), or None when
        the broker does not count them by state (``queue_depth()`` then)."""

    async def queue_depth(self) -> int:
        """How many runs wait in the broker (ready and delayed)."""

    async def get_task(self, name: str, version: int | None = None) -> Task | None:
        """The current version of the task ``name`` (or the stored ``version``), or None."""

    async def list_tasks(self) -> list[Task]:
        """Every stored task (current versions), sorted by name."""

    async def next_fire_time(self, name: str) -> datetime | None:
        """When the task fires next (UTC), or None."""

    async def runs(
        self,
        name: str | None = None,
        state: str | RunState | Iterable[str | RunState] | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Recorded runs, newest first, filtered by task name and state."""

    async def get_run(self, run_id: str) -> Run | None:
        """One run record by id, or None."""
