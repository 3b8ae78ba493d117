"""The runs executing in this process (worker runs and manual runs), the leases held on them,
and why one was cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

from sts_core.interfaces import Delivery
from sts_core.run import Run, RunState


class RunsInFlight:
    """What executes here now. The worker loop fills and empties it; ``stop``, ``cancel_task``
    and ``health`` look into it; redelivery asks it for the newest lease held on a run.

    - ``executing``: by the id of the run as delivered (or the manual run's id), its asyncio
      task and the run;
    - ``leases``: for worker runs, the newest delivery (lease) held and the lease's length;
    - ``cancel_reasons``: why an executing asyncio task was cancelled (absent: not by us).
    """

    def __init__(self) -> None:
        self.executing: dict[str, tuple[asyncio.Task[Any], Run]] = {}
        self.leases: dict[str, tuple[Delivery, float]] = {}
        self.cancel_reasons: dict[asyncio.Task[Any], RunState] = {}

    def __len__(self) -> int:
        return len(self.executing)

    def held(self, delivery: Delivery) -> Delivery:
        """The newest lease this worker holds on the delivered run."""
        return self.leases.get(delivery.run.id, (delivery, 0.0))[0]

    def cancel(self, task: asyncio.Task[Any], reason: RunState) -> None:
        """Cancel an executing run's task; its run is recorded with state ``reason``."""
        self.cancel_reasons[task] = reason
        task.cancel()

    def interrupt_all(self) -> None:
        """Interrupt every run in flight now; they are recorded as interrupted."""
        for task, _ in list(self.executing.values()):
            if not task.done():
                self.cancel(task, RunState.INTERRUPTED)

    def cancel_runs(self, name: str) -> int:
        """Cancel the runs of task ``name`` executing now; they are recorded as cancelled."""
        count = 0
        for task, run in list(self.executing.values()):
            if run.task_name == name and not task.done():
                self.cancel(task, RunState.CANCELLED)
                count += 1
        return count
