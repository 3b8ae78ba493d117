"""What a worker does with a run delivered again: record the lost attempt, complete an outcome
that was recorded but not acknowledged, dead-letter a run delivered too often, and record a
stale worker's late result as a duplicate. The worker loop (``sts_core.working``) hands such runs here."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

import attrs

from sts_core import events as ev
from sts_core.activefires import ActiveFires
from sts_core.clock import Clock
from sts_core.eventbus import EventBus
from sts_core.interfaces import Delivery
from sts_core.isolation import Attempts
from sts_core.outcomes import Outcomes, next_attempt
from sts_core.plans import TaskPlans
from sts_core.run import Run, RunState
from sts_core.runlog import log_run
from sts_core.steps import Retrying
from sts_core.task import Task

log = logging.getLogger("sts.engine")


class Redelivery:
    """The worker's handling of redeliveries and stale leases. Holds no state of its own.

    Given the store and broker, the clock, the plans, the event bus, ``retrying`` (a backend
    step through an outage), ``held`` (the newest lease this worker holds on a delivered run),
    the local ``active`` fires, ``outcomes`` (what follows a recorded outcome) and this
    worker's id (recorded on the runs it ends).
    """

    def __init__(
        self,
        *,
        store: Any,
        broker: Any,
        clock: Clock,
        plans: TaskPlans,
        events: EventBus,
        retrying: Retrying,
        held: Callable[[Delivery], Delivery],
        active: ActiveFires,
        outcomes: Outcomes,
        worker_id: str,
    ) -> None:
        self.store = store
        self.broker = broker
        self.clock = clock
        self.plans = plans
        self.events = events
        self._retrying = retrying
        self._held = held
        self._active = active
        self._outcomes = outcomes
        self.worker_id = worker_id

    async def previous_attempts(self, delivery: Delivery) -> tuple[Run | None, Attempts]:
        """The run is delivered again: the record of the latest earlier attempt (marked lost first
        if it never recorded an outcome: its worker crashed or stalled past its lease), and what
        the earlier attempts' records say (``Attempts``: how many were lost, how many alone).

        Earlier deliveries are looked up newest first, not just the one before: a broker's count
        may skip (RabbitMQ counts a delivery whose ack was in flight when the server died, or one
        that waited in a prefetch buffer that was dropped), and those left no record."""
        count = delivery.delivery_count
        earlier = range(count - 1, max(count - 1 - LOOK_BACK, 0), -1)
        ids = [delivery_run_id(delivery.run.id, number) for number in earlier]
        found = await self._retrying(f"looking up earlier attempts of run {delivery.run.id}",
                                    lambda: asyncio.gather(*(self.store.get_run(run_id) for run_id in ids)))
        records = [record for record in found if record is not None]
        previous = records[0] if records else None
        if previous is not None and not previous.state.is_final:
            await self._mark_lost(previous, count)
        return previous, Attempts.of(records)

    async def _mark_lost(self, previous: Run, count: int) -> None:
        previous.state = RunState.LOST
        previous.ended_at = self.clock.now()
        previous.error_type = "WorkerLost"
        previous.error_message = (
            f"worker {previous.worker or '(unknown)'} was lost: its lease expired before it recorded an "
            f"outcome; the run was delivered again (delivery {count})"
            + ("; it ran alone there: a loss toward executor.max_redeliveries" if previous.isolated else "")
        )
        await self._retrying(f"recording run {previous.id} lost", lambda: self.store.record_run(previous))
        log_run(previous)
        if self.events.active:
            self.events.emit(ev.RunLost(previous.ended_at, attrs.evolve(previous), self._task_named(previous)))

    async def complete_recorded(self, delivery: Delivery, previous: Run) -> None:
        """The previous worker recorded the outcome but was lost before acknowledging it: do
        what it had left to do (queue the retry, start dependents) without running it again.
        Its events are emitted again: an alert may repeat, but none is lost."""
        log.warning("run %s: its outcome (%s) was recorded but its worker was lost before acknowledging it; "
                    "completing it without running it again", previous.id, previous.state.value)
        next_run = next_attempt(previous) if previous.state is RunState.RETRYING else None
        at = next_run.created_at if next_run is not None else None
        plan = await self.plans.for_version(previous.task_name, previous.task_version)
        if plan is not None:  # dependents first, then the ack: a crash in between repeats them harmlessly
            await self._outcomes.follow_up(plan, previous, self.events.active, repeated=True)
        if not await self._retrying(f"acknowledging run {previous.id}",
                                   lambda: self.broker.ack(self._held(delivery), next_run, at)):
            return
        if next_run is None:
            await self._active.release(previous)

    async def poison(self, delivery: Delivery, reason: str) -> None:
        """Move a run that must not run again to the dead-letter queue, record it as poison,
        and emit ``RunFailed`` so alerting hears of it."""
        now = self.clock.now()
        run = attrs.evolve(
            delivery.run,
            id=delivery_run_id(delivery.run.id, delivery.delivery_count),
            attempt=delivery.run.attempt + delivery.delivery_count - 1,
            state=RunState.POISON,
            reason="dead-lettered",
            started_at=None,
            ended_at=now,
            error_type="Poison",
            error_message=reason,
            worker=self.worker_id,
        )
        held = self._held(delivery)
        if not await self.broker.dead_letter(held, reason):
            return  # another worker holds it now and decides
        await self.store.record_run(run)
        log_run(run)
        if self.events.active:
            self.events.emit(ev.RunFailed(now, attrs.evolve(run), self._task_named(run)))
        await self._active.release(run)

    def _task_named(self, run: Run) -> Task | None:
        """The task's current definition, for an event about a run of it (None if unknown here)."""
        plan = self.plans.current(run.task_name)
        return plan.task if plan is not None else None

    async def record_duplicate(self, run: Run, task: Task) -> None:
        """The run's lease was lost before its outcome was acked: another worker was given it,
        so this execution is a duplicate. Recorded as such and announced with ``RunDuplicate``;
        no retry, no dependents."""
        outcome = run.state.value
        run.state = RunState.DUPLICATE
        run.retry_at = None
        run.reason = f"finished ({outcome}) after its lease was lost; another worker was given the run"
        await self._retrying(f"recording duplicate run {run.id}", lambda: self.store.record_run(run))
        log_run(run)
        if self.events.active:
            self.events.emit(ev.RunDuplicate(run.ended_at, attrs.evolve(run), task))
        self._active.forget(run)

    async def drop_copy(self, delivery: Delivery, run: Run, existing: Run, task: Task | None) -> None:
        """A second copy of a run's message was delivered (a publish repeated after its confirm
        was lost): the run is already recorded, so this copy is acked without running, and
        recorded as a duplicate under an id of its own, announced with ``RunDuplicate``."""
        if not await self._retrying(f"acknowledging a copy of run {run.id}", lambda: self.broker.ack(delivery)):
            return  # that copy's lease was lost too: whoever holds it now decides
        copy = attrs.evolve(
            run,
            id=f"{run.id}.copy-{secrets.token_hex(4)}",
            state=RunState.DUPLICATE,
            started_at=None,
            ended_at=self.clock.now(),
            reason=f"a second copy of run {run.id} was delivered (the run is {existing.state.value}); not run again",
        )
        log.warning("run %s: %s", copy.id, copy.reason)
        await self._retrying(f"recording duplicate run {copy.id}", lambda: self.store.record_run(copy))
        log_run(copy)
        if self.events.active:
            self.events.emit(ev.RunDuplicate(copy.ended_at, attrs.evolve(copy), task))


#: How many earlier deliveries of a run a redelivery looks up (newest first).
LOOK_BACK = 50

#: Outcomes a worker records before it acknowledges the run: a redelivery after one of these
#: completes the run instead of executing it again.
RECORDED_OUTCOMES = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.TIMED_OUT, RunState.RETRYING, RunState.CANCELLED}
)


def delivery_run_id(run_id: str, delivery_count: int) -> str:
    """The id of the attempt a delivery executes: the run's own id on its first delivery, a
    derived one on each redelivery, so every delivery has its own run record."""
    return run_id if delivery_count <= 1 else f"{run_id}.d{delivery_count}"
