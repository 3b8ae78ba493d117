"""What follows a run's outcome, wherever it was recorded (the worker loop, or a redelivery
completing an outcome its lost worker recorded): the outcome's event, and the task's dependents
started (all their parents succeeded) or skipped (a parent failed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import attrs

from sts_core import events as ev
from sts_core.clock import Clock
from sts_core.eventbus import EventBus
from sts_core.plans import TaskPlan, TaskPlans
from sts_core.run import FAILED_STATES, Run, RunState
from sts_core.steps import Retrying

#: The event announcing each outcome a run is recorded with.
OUTCOME_EVENTS: dict[RunState, type[ev.RunEvent]] = {
    RunState.SUCCEEDED: ev.RunSucceeded,
    RunState.RETRYING: ev.RunRetrying,
    RunState.FAILED: ev.RunFailed,
    RunState.TIMED_OUT: ev.RunFailed,
    RunState.CANCELLED: ev.RunCancelled,
    RunState.INTERRUPTED: ev.RunCancelled,
}


class Outcomes:
    """Announces recorded outcomes and starts or skips dependents.

    Given the store (dependency progress), the plans, the event bus, the clock, ``retrying``
    (a backend step through an outage) and, from the scheduler loop, ``dispatch`` (a child's run
    is queued as a fire is) and ``record_skip``. Holds no state of its own.
    """

    def __init__(
        self,
        *,
        store: Any,
        plans: TaskPlans,
        events: EventBus,
        clock: Clock,
        retrying: Retrying,
        dispatch: Callable[..., Awaitable[Run | None]],
        record_skip: Callable[[TaskPlan, datetime, str], Awaitable[Run]],
    ) -> None:
        self._store = store
        self._plans = plans
        self._events = events
        self._clock = clock
        self._retrying = retrying
        self._dispatch = dispatch
        self._record_skip = record_skip

    async def follow_up(self, plan: TaskPlan, run: Run, emit: bool, *, repeated: bool = False) -> None:
        """Emit the event of ``run``'s recorded outcome (when ``emit``; ``repeated``: a redelivery
        completes it again) and start or skip the task's dependents."""
        task = plan.task
        state = run.state
        if emit:
            self._events.emit(OUTCOME_EVENTS[state](run.ended_at, attrs.evolve(run), task, repeated))
        children = self._plans.children_of(task.name)
        if not children:
            return
        if state is RunState.SUCCEEDED:
            for child in children:
                await self._parent_succeeded(child, run)
        elif state in FAILED_STATES:
            await self._skip_descendants(task.name, f"upstream failed: {task.name}")

    async def _parent_succeeded(self, child: str, parent_run: Run) -> None:
        """Note the parent's success; start the child when all its parents have succeeded.

        Repeatable (a step retried after a lost reply, a redelivery completing a recorded
        outcome): the store answers the same parent run the same way, and the child's run has
        an id and fire time derived from the parent run, so it is queued once.
        """
        plan = self._plans.current(child)
        if plan is None or not plan.task.enabled:
            return
        parent = parent_run.task_name
        what = f"starting {child} after {parent}"
        parents = plan.parents
        store = self._store
        if await self._retrying(what, lambda: store.parent_succeeded(child, parent, parents, parent_run.id)):
            reason = f"parents succeeded: {', '.join(sorted(parents))}"
            when = parent_run.ended_at or self._clock.now()
            run_id = f"{parent_run.id}>{child}"
            await self._retrying(what, lambda: self._dispatch(plan, when, reason, run_id=run_id))

    async def _skip_descendants(self, name: str, reason: str) -> None:
        seen: set[str] = set()
        frontier = self._plans.children_of(name)
        now = self._clock.now()
        store = self._store
        while frontier:
            child = frontier.pop(0)
            if child in seen:
                continue
            seen.add(child)
            plan = self._plans.current(child)
            if plan is None:
                continue
            what = f"skipping {child}"
            await self._retrying(what, lambda: store.reset_parents(child))  # noqa: B023 - awaited here
            await self._retrying(what, lambda: self._record_skip(plan, now, reason))  # noqa: B023
            frontier.extend(self._plans.children_of(child))


def next_attempt(run: Run) -> Run:
    """The next attempt of a run recorded as retrying."""
    assert run.retry_at is not None
    return Run(
        id=f"{run.id}.r",  # the same id each time it is derived: queuing it again does nothing
        task_name=run.task_name,
        task_version=run.task_version,
        scheduled_for=run.scheduled_for,
        attempt=run.attempt + 1,
        reason="retry",
        fire_id=run.fire_id,
        created_at=run.retry_at,
    )
