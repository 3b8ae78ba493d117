"""The engine: the scheduler loop (fires due tasks) and the worker loop (executes runs).

Both are asyncio tasks on one loop; with a shared backend they may also run in separate
processes. The scheduler loop sleeps until the earliest due time in the store (or until a
task change wakes it), claims each due fire atomically and hands a ``Run`` to the broker.
The worker loop consumes runs, executes them through their task type, records the outcome,
retries with backoff, and starts dependents whose parents have all succeeded.

This module composes the engine from its parts (the loops are in ``firing`` and ``working``,
redeliveries in ``redelivery``), starts and stops them, and applies task changes other
processes make.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sts_core.activefires import ActiveFires
from sts_core.clock import Clock
from sts_core.errors import BackendError
from sts_core.eventbus import EventBus
from sts_core.firing import SchedulerLoop
from sts_core.functions import import_errors_once
from sts_core.health import Health
from sts_core.inflight import RunsInFlight
from sts_core.interfaces import Backend
from sts_core.outages import BackendOutages, take_step
from sts_core.outcomes import Outcomes
from sts_core.plans import PlanDefaults, TaskPlan, TaskPlans, compile_plan
from sts_core.plugins import PluginManager
from sts_core.redelivery import Redelivery
from sts_core.run import Run, RunState
from sts_core.steps import BackendSteps
from sts_core.synccalls import DEFAULT_MAX_ABANDONED, SyncCalls
from sts_core.task import Task
from sts_core.working import WorkerLoop

log = logging.getLogger("sts.engine")

#: How many first fire times of added tasks a shared store is sent side by side.
SCHEDULE_TOGETHER = 1000
#: How long ``stop`` lets the scheduler loop finish the fires it is handing to the broker.
STOP_PASS_GRACE = 2.0


class Engine:
    """Runs the scheduler and worker loops over one backend.

    Builds the parts and hands each the collaborators it needs: the scheduler loop
    (``sts_core.firing.SchedulerLoop``), the worker loop (``sts_core.working.WorkerLoop``),
    redeliveries (``sts_core.redelivery.Redelivery``), what follows an outcome
    (``sts_core.outcomes.Outcomes``), and the state several of them share: the backend's steps
    (``BackendSteps``), outages (``BackendOutages``), the local active fires (``ActiveFires``),
    the runs in flight (``RunsInFlight``) and the threads for synchronous functions
    (``SyncCalls``). Itself it holds the plans, starts and stops the loops, and applies task
    changes other processes make.
    """

    def __init__(
        self,
        *,
        config: Any,
        plugins: PluginManager,
        backend: Backend,
        clock: Clock,
        resolve_function: Callable[[Any], Callable[..., Any]],
        scheduler_id: str,
        owner: Any = None,
    ) -> None:
        self.config = config
        self.plugins = plugins
        self.store = store = backend.store
        self.broker = broker = backend.broker
        self.clock = clock
        self.resolve_function = resolve_function
        self.scheduler_id = scheduler_id
        self.worker_id = f"{socket.gethostname()}:{scheduler_id}"
        # ``owner``: the scheduler this engine works for, handed to event listeners.
        self.events = events = EventBus(plugins.event_listeners(plugins.switched_off(config)), scheduler=owner)
        self.defaults = PlanDefaults.from_config(config)
        self.plans = plans = TaskPlans(self.compile, store.get_task)
        self.outages = outages = BackendOutages(clock)
        # The backend's steps, chosen once from what it offers (its atomic steps, an outbox, or one by one).
        self.steps = steps = BackendSteps(backend, clock, lambda what, step: retrying(what, step))
        # A store other processes change too: plans may lag behind it and are reloaded on demand.
        self._shared = steps.shared
        # Nothing to wait out in one process: each step is taken directly (the hot path's cost).
        retrying = outages.retrying if self._shared else take_step
        self.active = active = ActiveFires(store, retrying)
        self.in_flight = in_flight = RunsInFlight()
        # queued runs of a removed task up to this version are cancelled when delivered
        self._removed_upto: dict[str, int] = {}
        self.scheduler_loop = scheduler_loop = SchedulerLoop(
            store=store, broker=broker, steps=steps, clock=clock, plans=plans, events=events, outages=outages,
            retrying=retrying, active=active, known_plan=self.known_plan, reload_task=self.reload_task,
            max_batch=int(config.get("scheduler.max_batch", 1000)),
        )
        outcomes = Outcomes(store=store, plans=plans, events=events, clock=clock, retrying=retrying,
                            dispatch=scheduler_loop.dispatch, record_skip=scheduler_loop.record_skip)
        self.redelivery = redelivery = Redelivery(
            store=store, broker=broker, clock=clock, plans=plans, events=events, retrying=retrying,
            held=in_flight.held, active=active, outcomes=outcomes, worker_id=self.worker_id,
        )
        self.sync_calls = SyncCalls(
            clock=clock, events=events, max_threads=int(config.get("executor.max_workers", 8)),
            max_abandoned=int(config.get("executor.max_abandoned_threads", DEFAULT_MAX_ABANDONED)),
        )
        self.worker_loop = WorkerLoop(
            store=store, broker=broker, steps=steps, clock=clock, plans=plans, events=events, plugins=plugins,
            resolve_function=resolve_function, outages=outages, retrying=retrying, active=active,
            in_flight=in_flight, redelivery=redelivery, outcomes=outcomes, sync_calls=self.sync_calls,
            reload_task=self.reload_task, removed_upto=self._removed_upto, worker_id=self.worker_id,
            concurrency=int(config.get("executor.concurrency", 100)),
            output_limit=int(config.get("executor.output_limit", 65536)),
            max_redeliveries=int(config.get("executor.max_redeliveries", 3)),
        )
        self._stopping = False
        self._loops: list[asyncio.Task[Any]] = []
        self.roles: tuple[str, ...] = ()
        self._changes: asyncio.Queue[str | None] | None = None
        # Notices received but not applied yet, by task name (None: every task): such a plan may be stale.
        self._unapplied: Counter[str | None] = Counter()
        self._watching = False
        self._watching_broker = False

    # -- plans -----------------------------------------------------------------------------------

    def compile(self, task: Task) -> TaskPlan:
        """Compile ``task`` (validated beforehand) into a plan."""
        return compile_plan(task, defaults=self.defaults, plugins=self.plugins, resolve_function=self.resolve_function)

    def first_fire(self, plan: TaskPlan) -> datetime | None:
        """When a task stored now fires first: its trigger's first time, now for a task with
        neither trigger nor parents (it runs once), None when disabled or started by parents.
        Raises what the trigger raises (``OverflowError`` for a time past year 9999)."""
        task = plan.task
        now = self.clock.now()
        if not task.enabled:
            return None
        if plan.trigger is not None:
            return plan.trigger.first_fire(now)
        return None if plan.parents else now

    async def schedule_first_many(self, firsts: Sequence[tuple[TaskPlan, datetime | None]]) -> None:
        """Set the first fire times of newly stored tasks and wake the scheduler loop; over a
        shared store the writes go side by side (together, rather than one round trip each)."""
        if not self._shared:
            for plan, first in firsts:
                await self.store.set_next_fire(plan.task.name, first)
        else:
            for start in range(0, len(firsts), SCHEDULE_TOGETHER):
                await asyncio.gather(*(self.store.set_next_fire(plan.task.name, first)
                                       for plan, first in firsts[start:start + SCHEDULE_TOGETHER]))
        self.wake()

    def known_plan(self, name: str) -> TaskPlan | None:
        """The plan of ``name`` when this process can vouch that it matches the store without
        asking it: the store is this process's own, or change notices arrive and every notice
        about the task has been applied. None otherwise (then reload it)."""
        plan = self.plans.current(name)
        if plan is None or not self._shared:
            return plan
        live = self._changes is not None and not self._stopping and self.steps.notices_live
        if not live or self._unapplied.get(name) or self._unapplied.get(None):
            return None
        return plan

    @property
    def shared(self) -> bool:
        """True when other processes share the store (and change its tasks)."""
        return self._shared

    def health(self, *, running: bool) -> Health:
        """A snapshot of the loops' state; cheap, and safe to take from any thread."""
        threads = self.sync_calls.threads
        return Health(
            running=running,
            scheduler_id=self.scheduler_id,
            roles=self.roles if running else (),
            runs_in_flight=len(self.in_flight),
            beats=dict(self.outages.beats),
            backend_unavailable=self.outages.backend_unavailable,
            task_problems=self.plans.problems(),
            abandoned_threads=0 if threads is None else threads.abandoned_threads,
            waiting_for_thread=0 if threads is None else threads.waiting,
        )

    def wake(self) -> None:
        """Make the scheduler loop look at the store again (a task changed)."""
        self.scheduler_loop.wake()

    # -- runs ------------------------------------------------------------------------------------------

    async def dispatch(
        self,
        plan: TaskPlan,
        scheduled_for: datetime,
        reason: str,
        now: datetime | None = None,
        *,
        run_id: str | None = None,
        fire: str | None = None,
        expect_version: bool = False,
        queue_when_busy: bool = False,
    ) -> Run | None:
        """Queue a fire of ``plan`` now (a manual fire); ``SchedulerLoop.dispatch`` describes the options."""
        return await self.scheduler_loop.dispatch(plan, scheduled_for, reason, now, run_id=run_id, fire=fire,
                                                  expect_version=expect_version, queue_when_busy=queue_when_busy)

    async def execute_now(self, plan: TaskPlan, reason: str = "manual") -> Run:
        """Run ``plan`` now in the calling coroutine, retries included; return the last attempt."""
        return await self.worker_loop.execute_now(plan, reason)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, *, scheduler: bool = True, worker: bool = True) -> None:
        """Start the loops as asyncio tasks on the running loop."""
        self._stopping = False
        # A process without a worker never sees its runs end: it does not track them for wait_idle.
        self.active.local = worker
        self.roles = tuple(role for role, on in (("scheduler", scheduler), ("worker", worker)) if on)
        self.outages.beats.clear()
        # asyncio primitives belong to the loop that first uses them; a scheduler that is
        # started again after stop() may run on a new loop.
        self.scheduler_loop.bind_to_loop()
        self.worker_loop.bind_to_loop()
        self.active.bind_to_loop()
        steps = self.steps
        if steps.watches:
            self._changes = asyncio.Queue()  # a new one per start: it belongs to this loop
            self._unapplied.clear()
            if not self._watching:
                # once: the store keeps its watchers; a new earliest fire: look again, nothing to reload
                steps.watch(self._on_change, lambda _name: self.wake())
                self._watching = True
            self._loops.append(asyncio.create_task(self._watch_loop(), name="sts-watch"))
        if not self._watching_broker:
            steps.watch_availability(self.outages.retry_now)  # once: the broker keeps its watchers
            self._watching_broker = True
        if scheduler:
            self._loops.append(asyncio.create_task(self.scheduler_loop.run(), name="sts-scheduler"))
        if worker:
            self._loops.append(asyncio.create_task(self.worker_loop.run(), name="sts-worker"))
            self._loops.append(asyncio.create_task(self.worker_loop.heartbeat(), name="sts-heartbeat"))

    async def stop(self, grace: float) -> None:
        """Stop firing, let runs in flight finish for ``grace`` seconds, then interrupt them."""
        self._stopping = True
        self.scheduler_loop.stop()
        self.worker_loop.stop()
        self.outages.retry_now()  # a loop backing off from an outage ends now
        # Leases stay renewed while runs in flight finish: the heartbeat stops last.
        heartbeat = [task for task in self._loops if task.get_name() == "sts-heartbeat"]
        others = [task for task in self._loops if task not in heartbeat]
        # The scheduler loop ends by itself after its current pass (woken above): fires being
        # handed to the broker are let finish rather than cut off between claim and publish.
        scheduling = [task for task in others if task.get_name() == "sts-scheduler"]
        if scheduling:
            await asyncio.wait(scheduling, timeout=STOP_PASS_GRACE)
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._stop_consuming()
        in_flight = dict(self.in_flight.executing)
        if in_flight:
            log.info("waiting up to %ss for %d run(s) in flight", grace, len(in_flight))
            _, still = await asyncio.wait([task for task, _ in in_flight.values()], timeout=grace)
            for task, _ in in_flight.values():
                if task in still:
                    self.in_flight.cancel(task, RunState.INTERRUPTED)
            if still:
                await asyncio.wait(still)
        for task in heartbeat:
            task.cancel()
        await asyncio.gather(*heartbeat, return_exceptions=True)
        await self.worker_loop.stop_side_tasks()
        self._loops.clear()
        await self._drain_queue()

    async def _stop_consuming(self) -> None:
        """Tell a broker that pushes runs to stop: runs it has not handed over go back to the
        queue for other workers while this one finishes its runs in flight."""
        if "worker" not in self.roles:
            return
        try:
            await self.steps.stop_consuming()
        except BackendError as exc:
            log.warning("could not stop taking runs from the broker (%s); it takes them back when we disconnect", exc)

    async def _drain_queue(self) -> None:
        """Record the runs a non-durable broker still holds as cancelled: they die with us."""
        for run in await self.steps.drain():
            await self.worker_loop.record_unstarted(run, RunState.CANCELLED, "the scheduler stopped before it ran")
            await self.active.release(run)

    def close(self) -> None:
        """Release threads (does not wait for threads still running a timed-out function)."""
        self.sync_calls.close()
        self.events.close()

    # -- task changes made by other processes ---------------------------------------------------

    def _on_change(self, name: str | None) -> None:
        if self._changes is not None:
            self._unapplied[name] += 1
            self._changes.put_nowait(name)

    async def _watch_loop(self) -> None:
        """Apply task changes other processes made to a shared store, one at a time."""
        while not self._stopping:
            name = await self._changes.get()
            try:
                if name is None:
                    await self.reload_all()
                else:
                    await self.reload_task(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next notice (or resync) repairs it
                log.warning("could not apply a change of task %s: %s", name or "(all)", exc)
            finally:
                self._unapplied[name] -= 1
                if self._unapplied[name] <= 0:
                    del self._unapplied[name]
            self.wake()  # a task's next fire may now be the earliest
            if name is None:
                self.outages.retry_now()  # a resync: the store is back

    async def reload_task(self, name: str) -> TaskPlan | None:
        """Make the plan of ``name`` match the store."""
        return self.apply_stored(name, await self.store.get_task(name))

    def apply_stored(self, name: str, task: Task | None) -> TaskPlan | None:
        """Make the plan of ``name`` match ``task``, its stored version (None: not stored)."""
        current = self.plans.current(name)
        if task is None:
            if current is not None:
                self.plans.uninstall(name)
                self.forget_task(name, current.task.version)
            return None
        if current is not None and current.task.version >= task.version:
            return current  # up to date, or a concurrent reload installed a newer version meanwhile
        if task.version <= self._removed_upto.get(name, 0):
            return None  # read before a delete that was applied meanwhile
        try:
            plan = self.compile(task)
        except Exception as exc:  # noqa: BLE001 - one bad stored task must not stop the others
            log.error("stored task %r (version %d) cannot be loaded: %s", name, task.version, exc)
            return None
        self.plans.install(plan)
        self.wake()
        return plan

    async def reload_all(self) -> None:
        """Make every plan match the store (after notices may have been missed)."""
        stored = {task.name: task for task in await self.store.list_tasks()}
        for name, _ in self.plans.items():
            if name not in stored:
                self.apply_stored(name, None)
        with import_errors_once():
            for name, task in stored.items():
                self.apply_stored(name, task)

    def forget_task(self, name: str, version: int) -> None:
        """The task was removed: its queued runs (up to ``version``) are cancelled when delivered.
        (The store forgets its active fires, so they do not count towards ``max_instances`` of
        a task added again.)"""
        self._removed_upto[name] = max(version, self._removed_upto.get(name, 0))
        self.active.forget_task(name)

    # -- control ---------------------------------------------------------------------------------------

    def interrupt_all(self) -> None:
        """Interrupt every run in flight now (a second Ctrl-C); they are recorded as interrupted."""
        self.in_flight.interrupt_all()

    def cancel_runs(self, name: str) -> int:
        """Cancel the runs of ``name`` executing now; they are recorded as cancelled."""
        return self.in_flight.cancel_runs(name)

    async def wait_idle(self) -> None:
        """Wait until no run is queued or executing (tests, ``run`` of a one-shot scheduler)."""
        await self.active.idle.wait()
