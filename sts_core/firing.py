"""The scheduler loop: sleep until the earliest due fire (or a wake-up), claim each due fire,
apply the misfire policy, and hand the runs to the broker."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import attrs

from sts_core import events as ev
from sts_core.activefires import ActiveFires
from sts_core.clock import Clock
from sts_core.errors import BackendError
from sts_core.eventbus import EventBus
from sts_core.interfaces import DueFire
from sts_core.outages import BackendOutages
from sts_core.plans import TaskPlan, TaskPlans
from sts_core.run import Run, RunState, fire_id, new_run_id
from sts_core.runlog import log_run
from sts_core.steps import BackendSteps, Retrying

log = logging.getLogger("sts.engine")

#: The scheduler never sleeps longer than this, so a wall-clock jump is noticed soon.
MAX_SLEEP = 30.0
#: Upper bound on catch-up fires computed for one task after downtime.
MAX_CATCH_UP = 10_000
#: With an outbox, how often the scheduler loop publishes runs a dead scheduler left staged
#: (``BackendSteps.publish_stranded``).
OUTBOX_SWEEP_INTERVAL = 5.0
#: With a backend shared between processes, how many due tasks are fired side by side.
FIRE_TOGETHER = 64
#: A due task this scheduler cannot fire is tried again this many seconds later.
UNFIREABLE_RETRY = 60.0


class SchedulerLoop:
    """The scheduler loop, and the dispatch of fires (scheduled, manual, a dependent's).

    Owns the wake-up event (``wake``), whether it is stopping, the clock offset it watches for
    jumps, the next outbox sweep, the batch size and the jitter's random source. Given the store
    and broker, the backend ``steps``, the clock, the plans, the event bus, ``outages`` (its
    backoff and beat), ``retrying`` (a backend step through an outage), the local ``active``
    fires (a dispatched fire is one), and from the engine, which applies task changes:
    ``known_plan`` (a plan it can vouch for without asking the store) and ``reload_task``.
    """

    def __init__(
        self,
        *,
        store: Any,
        broker: Any,
        steps: BackendSteps,
        clock: Clock,
        plans: TaskPlans,
        events: EventBus,
        outages: BackendOutages,
        retrying: Retrying,
        active: ActiveFires,
        known_plan: Callable[[str], TaskPlan | None],
        reload_task: Callable[[str], Awaitable[TaskPlan | None]],
        max_batch: int,
    ) -> None:
        self.store = store
        self.broker = broker
        self.steps = steps
        self.clock = clock
        self.plans = plans
        self.events = events
        self._outages = outages
        self._retrying = retrying
        self._active = active
        self._known_plan = known_plan
        self._reload_task = reload_task
        self._shared = steps.shared
        self._max_batch = max_batch
        self._random = random.Random()
        self._stopping = False
        self._clock_offset = 0.0
        self._next_sweep = 0.0
        self._wake = asyncio.Event()

    def bind_to_loop(self) -> None:
        """Start afresh on the running loop (an asyncio event belongs to one loop)."""
        self._stopping = False
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Make the loop look at the store again (a task changed)."""
        self._wake.set()

    def stop(self) -> None:
        """End the loop after its current pass."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """The scheduler loop, until ``stop``."""
        self._clock_offset = self._wall_minus_monotonic()
        while not self._stopping:
            try:
                await self._scheduler_pass()
                self._outages.loop_alive("scheduler")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged by back_off
                # A failing backend must not end scheduling for good: log, back off, try again.
                await self._outages.back_off("scheduler", exc)

    async def _scheduler_pass(self) -> None:
        """Fire what is due, or sleep until the next due time (or a wake-up)."""
        self._wake.clear()
        await self._notice_clock_jump()
        if self.steps.outbox and self.clock.monotonic() >= self._next_sweep:
            self._next_sweep = self.clock.monotonic() + OUTBOX_SWEEP_INTERVAL
            await self.steps.publish_stranded()
        now = self.clock.now()
        due = await self.store.due_fires(now, self._max_batch)
        if due:
            if self._shared and len(due) > 1:
                await self._fire_together(due, now)
            else:
                fire_one = self._fire
                for fire in due:
                    try:  # _fire_safely, without a coroutine of its own per fire
                        await fire_one(fire, now)
                    except (asyncio.CancelledError, BackendError):
                        raise
                    except Exception as exc:  # noqa: BLE001 - see _fire_safely
                        await self._fire_failed(fire, now, exc)
            await asyncio.sleep(0)  # let workers run between batches
            return
        next_due = await self.store.next_due_time()
        timeout = MAX_SLEEP if next_due is None else (next_due - now).total_seconds()
        if self.steps.outbox:
            timeout = min(timeout, self._next_sweep - self.clock.monotonic())
        await self.clock.wait(self._wake, min(max(timeout, 0.0), MAX_SLEEP))

    async def _fire_together(self, due: list[DueFire], now: datetime) -> None:
        """Fire several due tasks at once (one fire per task, so they share nothing). Over a
        shared backend each fire waits for round trips (with an outbox three, one of them a
        broker's confirm); waiting for them side by side multiplies the fires per second, and
        the Redis plugin sends steps asked for together in one pipeline. A backend error is
        raised once all have finished."""
        for start in range(0, len(due), FIRE_TOGETHER):
            outcomes = await asyncio.gather(
                *(self._fire_safely(fire, now) for fire in due[start:start + FIRE_TOGETHER]), return_exceptions=True
            )
            failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
            for failure in failures[1:]:
                log.warning("firing failed too: %s", failure)
            if failures:
                raise failures[0]

    async def _fire_safely(self, fire: DueFire, now: datetime) -> None:
        try:
            await self._fire(fire, now)
        except (asyncio.CancelledError, BackendError):
            raise  # the loop backs off; the fire stays due
        except Exception as exc:  # noqa: BLE001 - a trigger that raises: recorded, see _cannot_fire
            await self._fire_failed(fire, now, exc)

    async def _fire_failed(self, fire: DueFire, now: datetime, exc: Exception) -> None:
        await self._cannot_fire(fire, now, f"firing it failed: {type(exc).__name__}: {exc}", exc)

    async def _cannot_fire(
        self, fire: DueFire, now: datetime, problem: str, error: BaseException | None = None
    ) -> None:
        """A due task this process cannot fire (its trigger cannot be built or raised): record a
        failed run saying why, so that history, alerts and metrics show it, and keep the task due,
        trying again in ``UNFIREABLE_RETRY`` seconds (never drop it: that loses it silently)."""
        plan = self.plans.current(fire.task_name)
        log.error("task %r cannot be fired by this scheduler: %s; trying again in %gs",
                  fire.task_name, problem, UNFIREABLE_RETRY, exc_info=error)  # a trigger's bug: where
        if not await self.store.claim_fire(fire, now + timedelta(seconds=UNFIREABLE_RETRY)):
            return  # another scheduler took the fire
        if plan is None:
            return
        await self._record_unrun(plan, fire.scheduled_for, RunState.FAILED, "schedule", ev.RunFailed,
                                 error_type="TaskLoadError", error_message=f"cannot be fired: {problem}")

    def _wall_minus_monotonic(self) -> float:
        return self.clock.now().timestamp() - self.clock.monotonic()

    async def _notice_clock_jump(self) -> None:
        """Log a jump of the system clock; after a backward jump, bring forward next fire
        times that now lie further ahead than the trigger would place them, so interval
        tasks do not stall for the length of the jump."""
        offset = self._wall_minus_monotonic()
        jump = offset - self._clock_offset
        self._clock_offset = offset
        if abs(jump) < 1.0:
            return
        log.warning("the system clock jumped by %+.1fs; fire times follow the new wall time", jump)
        if jump > 0:
            return  # fires now overdue follow each task's misfire policy
        now = self.clock.now()
        for name, plan in self.plans.items():
            if plan.trigger is None:
                continue
            stored = await self.store.get_next_fire(name)
            if stored is None:
                continue
            candidate = plan.trigger.first_fire(now)
            if candidate is not None and candidate < stored:
                await self.store.set_next_fire(name, candidate)

    async def _fire(self, fire: DueFire, now: datetime) -> None:
        plan = self._known_plan(fire.task_name)
        if plan is None and self._shared:
            # Added or changed by another process just now (its notice not applied yet): as stored.
            plan = await self._reload_task(fire.task_name)
        if plan is None:
            await self.store.claim_fire(fire, None)
            return
        if plan.trigger_error is not None:
            await self._cannot_fire(fire, now, plan.trigger_error)
            return
        scheduled = fire.scheduled_for
        trigger = plan.trigger
        due = [scheduled]
        following = trigger.next_fire(scheduled) if trigger is not None else None
        while following is not None and following <= now and len(due) < MAX_CATCH_UP:
            due.append(following)
            following = trigger.next_fire(following)
        if following is not None and following <= now:
            # Beyond the catch-up bound (a long outage of a frequent task): jump straight past
            # now rather than stepping through every missed fire (first_fire keeps an
            # interval's alignment on its start).
            following = trigger.first_fire(now)
            if following is not None and following <= now:
                following = trigger.next_fire(following)
        # The claim (another scheduler may win it) and the dispatch of a single run are one step
        # where the backend offers it, so a scheduler that dies between them loses no fire.
        claim = (fire, following)
        if len(due) == 1 and ((now - scheduled).total_seconds() <= plan.misfire_grace or trigger is None):
            await self.dispatch(plan, scheduled, "schedule", now, claim=claim)
        elif plan.misfire == "coalesce":
            if await self.dispatch(plan, due[-1], f"coalesced {len(due)} due fire(s)", now, claim=claim):
                self._report_misfire(plan, due, now)
        elif await self.store.claim_fire(fire, following):
            self._report_misfire(plan, due, now)
            await self._handle_misfire(plan, due, now)

    def _report_misfire(self, plan: TaskPlan, due: list[datetime], now: datetime) -> None:
        name = plan.task.name
        timely = any((now - t).total_seconds() <= plan.misfire_grace for t in due)
        log.warning("%s has %d fire(s) due since %s (misfire policy %s)", name, len(due), due[0].isoformat(),
                    plan.misfire)
        if self.events.active:
            missed = len(due) - 1 if timely else len(due)
            self.events.emit(ev.FireMissed(now, name, due[0], missed, plan.misfire, plan.task))

    async def _handle_misfire(self, plan: TaskPlan, due: list[datetime], now: datetime) -> None:
        """Several fires are due at once, or one is later than the grace time: the scheduler
        was down or busy, or the wall clock jumped. Policies run_all and skip (coalesce is one
        dispatch, made with the claim)."""
        grace = plan.misfire_grace
        timely = [t for t in due if (now - t).total_seconds() <= grace]
        if plan.misfire == "run_all":
            for scheduled in due:  # asked for explicitly, so max_instances does not drop them
                await self.dispatch(plan, scheduled, "catch-up", now, limit_instances=False)
        else:  # skip: only a fire within the grace time runs, the latest of them
            skipped = len(due) - (1 if timely else 0)
            await self.record_skip(plan, due[-1] if not timely else due[0],
                                    f"missed fire ({skipped} skipped, policy skip)")
            if timely:
                await self.dispatch(plan, timely[-1], "schedule", now)

    async def dispatch(
        self,
        plan: TaskPlan,
        scheduled_for: datetime,
        reason: str,
        now: datetime | None = None,
        *,
        limit_instances: bool = True,
        claim: tuple[DueFire, datetime | None] | None = None,
        run_id: str | None = None,
        fire: str | None = None,
        expect_version: bool = False,
        queue_when_busy: bool = False,
    ) -> Run | None:
        """Create the first attempt of a fire and hand it to the broker, or record it skipped
        when ``max_instances`` runs of the task are already queued or running.

        With ``claim`` (a due fire and the next fire time) the fire is claimed first; None
        when another scheduler won it. A backend with ``AtomicSteps`` does it all in one atomic
        step. ``fire`` overrides the fire's id (a manual fire is not the scheduled fire of the
        same instant). ``expect_version``: None as well when the task is no longer stored in the
        plan's version. ``queue_when_busy`` (manual fires): rather than being skipped at
        ``max_instances``, the run is queued to start once one of the active runs ends.
        """
        task = plan.task
        fire = fire or fire_id(task.name, scheduled_for)
        limit = task.max_instances if limit_instances else 1 << 30
        run = Run(
            id=run_id or new_run_id(),
            task_name=task.name,
            task_version=task.version,
            scheduled_for=scheduled_for,
            reason=reason,
            fire_id=fire,
            created_at=now or self.clock.now(),
        )
        at = scheduled_for + timedelta(seconds=self._random.uniform(0.0, plan.jitter)) if plan.jitter else None
        # One step where the backend offers it (AtomicSteps), else staged or stepwise (sts_core.steps).
        if expect_version:
            outcome = await self.steps.claim_and_dispatch(claim, run, limit, at, version=task.version)
        else:
            outcome = await self.steps.claim_and_dispatch(claim, run, limit, at)
        if outcome != "queued" and outcome != "limited":
            return None  # lost: another scheduler fired it; gone or changed: the task is not stored in this version
        admitted = outcome == "queued"
        if not admitted:
            if not queue_when_busy:
                return await self.record_skip(
                    plan, scheduled_for, f"max_instances={task.max_instances} reached: previous run still active"
                )
            run.waits_for_instance = True
            run.reason = f"{reason} (queued behind a run still active: max_instances={task.max_instances})"
            await self._retrying(f"queuing run {run.id} of {task.name}", lambda: self.broker.enqueue(run, None))
        self._active.started(task.name, fire)
        return run

    async def record_skip(self, plan: TaskPlan, scheduled_for: datetime, reason: str) -> Run:
        return await self._record_unrun(plan, scheduled_for, RunState.SKIPPED, reason, ev.RunSkipped)

    async def _record_unrun(
        self, plan: TaskPlan, scheduled_for: datetime, state: RunState, reason: str, event: type[ev.RunEvent],
        **details: str,
    ) -> Run:
        """Record a fire that ended without running (``state``: skipped, or failed before it could
        be fired), log it and emit ``event``."""
        now = self.clock.now()
        task = plan.task
        run = Run(
            id=new_run_id(),
            task_name=task.name,
            task_version=task.version,
            scheduled_for=scheduled_for,
            state=state,
            reason=reason,
            fire_id=fire_id(task.name, scheduled_for),
            created_at=now,
            ended_at=now,
            **details,
        )
        await self.store.record_run(run)
        log_run(run)
        if self.events.active:
            self.events.emit(event(now, attrs.evolve(run), task))
        return run
