"""The engine: the scheduler loop (fires due tasks) and the worker loop (executes runs).

Both are asyncio tasks on one loop; with a shared backend they may also run in separate
processes. The scheduler loop sleeps until the earliest due time in the store (or until a
task change wakes it), claims each due fire atomically and hands a ``Run`` to the broker.
The worker loop consumes runs, executes them through their task type, records the outcome,
retries with backoff, and starts dependents whose parents have all succeeded.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import socket
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import attrs

from sts_core import events as ev
from sts_core.clock import Clock
from sts_core.errors import BackendUnavailableError
from sts_core.eventbus import EventBus
from sts_core.interfaces import Backend, Delivery, DueFire, ExecutionContext
from sts_core.model import FAILED_STATES, Run, RunState, Task, fire_id, new_run_id
from sts_core.output import BoundedOutput
from sts_core.plans import PlanDefaults, TaskPlan, TaskPlans, compile_plan
from sts_core.plugins import PluginManager
from sts_core.runcontext import reset_current_run, set_current_run
from sts_core.runlog import log_run
from sts_core.threadpool import DaemonThreadPool

log = logging.getLogger("sts.engine")

#: The scheduler never sleeps longer than this, so a wall-clock jump is noticed soon.
MAX_SLEEP = 30.0
#: Upper bound on catch-up fires computed for one task after downtime.
MAX_CATCH_UP = 10_000
#: How long the scheduler loop waits after an unexpected error (a backend down) before retrying.
LOOP_RETRY_DELAY = 1.0
#: How often leases of runs executing here are checked; a lease is renewed at half its length.
HEARTBEAT_INTERVAL = 1.0
#: The most runs a worker takes from a broker with ``consume_many`` in one call.
MAX_PREFETCH = 32
#: While the backend is unreachable, loops retry after a delay doubling up to this (seconds),
#: or sooner when the backend says it is back (a shared store's watch resyncs and wakes them).
MAX_BACKOFF = 5.0
_RESULT_LIMIT = 500


class Engine:
    """Runs the scheduler and worker loops over one backend."""

    def __init__(
        self,
        *,
        config: Any,
        plugins: PluginManager,
        backend: Backend,
        clock: Clock,
        resolve_function: Callable[[Any], Callable[..., Any]],
        scheduler_id: str,
    ) -> None:
        self.config = config
        self.plugins = plugins
        self.store = backend.store
        self.broker = backend.broker
        self.clock = clock
        self.resolve_function = resolve_function
        self.scheduler_id = scheduler_id
        self.worker_id = f"{socket.gethostname()}:{scheduler_id}"
        self.events = EventBus(plugins.event_listeners())
        self.defaults = PlanDefaults.from_config(config)
        self.plans = TaskPlans(self.compile, self.store.get_task)
        # fire ids this engine dispatched whose runs are not over yet (for wait_idle); the store
        # counts active fires across processes for max_instances
        self._active: dict[str, set[str]] = {}
        # runs executing here (worker and manual runs) by the id of the run as delivered, and for
        # worker runs the lease we hold and its length
        self._executing: dict[str, tuple[asyncio.Task[Any], Run]] = {}
        self._deliveries: dict[str, tuple[Delivery, float]] = {}
        # why an executing asyncio task was cancelled (absent: not by us)
        self._cancel_reasons: dict[asyncio.Task[Any], RunState] = {}
        # queued runs of a removed task up to this version are cancelled when delivered
        self._removed_upto: dict[str, int] = {}
        self._stopping = False
        self._loops: list[asyncio.Task[Any]] = []
        self._concurrency = int(config.get("executor.concurrency", 100))
        self._max_threads = int(config.get("executor.max_workers", 8))
        self._threads: DaemonThreadPool | None = None  # created on first use, again after close()
        self._output_limit = int(config.get("executor.output_limit", 65536))
        self._max_redeliveries = int(config.get("executor.max_redeliveries", 3))
        self._durable = getattr(self.broker, "durable", True)
        # claim_and_enqueue(claim, run, limit, at) -> "queued" | "limited" | "lost": a backend
        # whose store and broker live in one server offers the fire's steps as one.
        self._claim_and_enqueue = getattr(backend, "claim_and_enqueue", None)
        # record_and_ack(run, delivery, then, at, end_fire) -> bool: a finished run's steps as one.
        self._record_and_ack = getattr(backend, "record_and_ack", None)
        self._unavailable: dict[str, float] = {}  # loop name -> current backoff, while the backend is away
        self._backing_off: set[asyncio.Event] = set()
        self._max_batch = int(config.get("scheduler.max_batch", 1000))
        self._random = random.Random()
        self._clock_offset = 0.0
        self._bind_to_loop()

    def _bind_to_loop(self) -> None:
        # asyncio primitives belong to the loop that first uses them; a scheduler that is
        # started again after stop() may run on a new loop.
        self._wake = asyncio.Event()
        self._free_slots = self._concurrency - len(self._executing)
        self._slot_freed = asyncio.Event()
        self.idle = asyncio.Event()
        if not self._active:
            self.idle.set()

    # -- plans -----------------------------------------------------------------------------------

    def compile(self, task: Task) -> TaskPlan:
        """Compile ``task`` (validated beforehand) into a plan."""
        return compile_plan(task, defaults=self.defaults, plugins=self.plugins, resolve_function=self.resolve_function)

    async def schedule_first(self, plan: TaskPlan) -> datetime | None:
        """Set the first fire time of a newly stored task and wake the scheduler loop."""
        task = plan.task
        now = self.clock.now()
        if not task.enabled:
            first = None
        elif plan.trigger is not None:
            first = plan.trigger.first_fire(now)
        elif not plan.parents:
            first = now  # no trigger and no parents: run once, now
        else:
            first = None  # started by its parents
        await self.store.set_next_fire(task.name, first)
        self.wake()
        return first

    def wake(self) -> None:
        """Make the scheduler loop look at the store again (a task changed)."""
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, *, scheduler: bool = True, worker: bool = True) -> None:
        """Start the loops as asyncio tasks on the running loop."""
        self._stopping = False
        self._bind_to_loop()
        watch = getattr(self.store, "watch", None)
        if watch is not None:
            self._changes: asyncio.Queue[str | None] = asyncio.Queue()
            watch(self._changes.put_nowait)
            self._loops.append(asyncio.create_task(self._watch_loop(), name="sts-watch"))
        if scheduler:
            self._loops.append(asyncio.create_task(self._scheduler_loop(), name="sts-scheduler"))
        if worker:
            self._loops.append(asyncio.create_task(self._worker_loop(), name="sts-worker"))
            self._loops.append(asyncio.create_task(self._heartbeat_loop(), name="sts-heartbeat"))

    async def stop(self, grace: float) -> None:
        """Stop firing, let runs in flight finish for ``grace`` seconds, then interrupt them."""
        self._stopping = True
        self._wake.set()
        # Leases stay renewed while runs in flight finish: the heartbeat stops last.
        heartbeat = [task for task in self._loops if task.get_name() == "sts-heartbeat"]
        others = [task for task in self._loops if task not in heartbeat]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        in_flight = dict(self._executing)
        if in_flight:
            log.info("waiting up to %ss for %d run(s) in flight", grace, len(in_flight))
            _, still = await asyncio.wait([task for task, _ in in_flight.values()], timeout=grace)
            for task, _ in in_flight.values():
                if task in still:
                    self._cancel_reasons[task] = RunState.INTERRUPTED
                    task.cancel()
            if still:
                await asyncio.wait(still)
        for task in heartbeat:
            task.cancel()
        await asyncio.gather(*heartbeat, return_exceptions=True)
        self._loops.clear()
        await self._drain_queue()

    async def _drain_queue(self) -> None:
        """Record the runs a non-durable broker still holds as cancelled: they die with us."""
        if getattr(self.broker, "durable", True) or not hasattr(self.broker, "drain"):
            return
        for run in await self.broker.drain():
            await self._record_unstarted(run, RunState.CANCELLED, "the scheduler stopped before it ran")
            await self._release(run)

    def close(self) -> None:
        """Release threads (does not wait for threads still running a timed-out function)."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        self.events.close()

    # -- scheduler loop -----------------------------------------------------------------------------

    async def _scheduler_loop(self) -> None:
        self._clock_offset = self._wall_minus_monotonic()
        while not self._stopping:
            try:
                await self._scheduler_pass()
                self._backend_back("scheduler")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged by _back_off
                # A failing backend must not end scheduling for good: log, back off, try again.
                await self._back_off("scheduler", exc)

    async def _back_off(self, loop: str, exc: Exception) -> None:
        """Wait before a loop tries again after ``exc``: an unreachable backend gets one log line
        and a delay doubling up to ``MAX_BACKOFF``; anything else is logged in full."""
        if isinstance(exc, BackendUnavailableError):
            delay = self._unavailable.get(loop)
            delay = LOOP_RETRY_DELAY if delay is None else min(delay * 2, MAX_BACKOFF)
            if loop not in self._unavailable or delay < MAX_BACKOFF:
                log.warning("%s loop: %s; retrying in %gs", loop, exc, delay)
            self._unavailable[loop] = delay
        else:
            delay = LOOP_RETRY_DELAY
            log.exception("the %s loop failed; retrying in %gs", loop, delay)
        retry_now = asyncio.Event()  # set when a shared store resyncs: the backend is back
        self._backing_off.add(retry_now)
        try:
            await self.clock.wait(retry_now, delay)
        finally:
            self._backing_off.discard(retry_now)

    def _backend_back(self, loop: str) -> None:
        if self._unavailable and self._unavailable.pop(loop, None) is not None:
            log.warning("%s loop: the backend is reachable again", loop)

    # -- task changes made by other processes ---------------------------------------------------

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
            if name is None:
                for retry_now in self._backing_off:
                    retry_now.set()

    async def reload_task(self, name: str, task: Task | None = None, *, known: bool = False) -> TaskPlan | None:
        """Make the plan of ``name`` match the store (``task``: the stored task, if already read)."""
        if not known:
            task = await self.store.get_task(name)
        current = self.plans.current(name)
        if task is None:
            if current is not None:
                self.plans.uninstall(name)
                self.forget_task(name, current.task.version)
            return None
        if current is not None and current.task.version == task.version:
            return current
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
                await self.reload_task(name, None, known=True)
        for name, task in stored.items():
            await self.reload_task(name, task, known=True)

    async def _scheduler_pass(self) -> None:
        """Fire what is due, or sleep until the next due time (or a wake-up)."""
        self._wake.clear()
        await self._notice_clock_jump()
        now = self.clock.now()
        due = await self.store.due_fires(now, self._max_batch)
        if due:
            for fire in due:
                await self._fire_safely(fire, now)
            await asyncio.sleep(0)  # let workers run between batches
            return
        next_due = await self.store.next_due_time()
        timeout = MAX_SLEEP if next_due is None else (next_due - now).total_seconds()
        await self.clock.wait(self._wake, min(max(timeout, 0.0), MAX_SLEEP))

    async def _fire_safely(self, fire: DueFire, now: datetime) -> None:
        try:
            await self._fire(fire, now)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A trigger or task type that raises would otherwise be due again at once, forever.
            log.exception("firing %s failed; the task is unscheduled until it is added again", fire.task_name)
            await self.store.claim_fire(fire, None)

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
        plan = self.plans.current(fire.task_name)
        if plan is None and getattr(self.store, "shared", False):
            plan = await self.reload_task(fire.task_name)  # added by another process just now
        if plan is None:
            await self.store.claim_fire(fire, None)
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
            self.events.emit(ev.FireMissed(now, name, due[0], len(due) - 1 if timely else len(due), plan.misfire))

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
            await self._record_skip(plan, due[-1] if not timely else due[0],
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
    ) -> Run | None:
        """Create the first attempt of a fire and hand it to the broker, or record it skipped
        when ``max_instances`` runs of the task are already queued or running.

        With ``claim`` (a due fire and the next fire time) the fire is claimed first; None
        when another scheduler won it. A backend with ``claim_and_enqueue`` does it all in
        one atomic step.
        """
        task = plan.task
        fire = fire_id(task.name, scheduled_for)
        limit = task.max_instances if limit_instances else 1 << 30
        run = Run(
            id=new_run_id(),
            task_name=task.name,
            task_version=task.version,
            scheduled_for=scheduled_for,
            reason=reason,
            fire_id=fire,
            created_at=now or self.clock.now(),
        )
        at = scheduled_for + timedelta(seconds=self._random.uniform(0.0, plan.jitter)) if plan.jitter else None
        if self._claim_and_enqueue is not None:
            outcome = await self._claim_and_enqueue(claim, run, limit, at)
            if outcome == "lost":
                return None
            admitted = outcome == "queued"
        else:
            if claim is not None and not await self.store.claim_fire(*claim):
                return None  # another scheduler fired it, or the task changed meanwhile
            admitted = await self.store.begin_fire(task.name, fire, limit)
            if admitted:
                await self.broker.enqueue(run, at)
        if not admitted:
            return await self._record_skip(
                plan, scheduled_for, f"max_instances={task.max_instances} reached: previous run still active"
            )
        self._active.setdefault(task.name, set()).add(fire)
        self.idle.clear()
        return run

    async def _record_skip(self, plan: TaskPlan, scheduled_for: datetime, reason: str) -> Run:
        now = self.clock.now()
        task = plan.task
        run = Run(
            id=new_run_id(),
            task_name=task.name,
            task_version=task.version,
            scheduled_for=scheduled_for,
            state=RunState.SKIPPED,
            reason=reason,
            fire_id=fire_id(task.name, scheduled_for),
            created_at=now,
            ended_at=now,
        )
        await self.store.record_run(run)
        log_run(run)
        if self.events.active:
            self.events.emit(ev.RunSkipped(now, attrs.evolve(run), task))
        return run

    # -- worker loop --------------------------------------------------------------------------------

    async def _worker_loop(self) -> None:
        # At most `executor.concurrency` runs execute at once; a plain counter is cheaper than a
        # Semaphore on this path, and this loop is its only taker. A broker with consume_many
        # hands over as many runs as there are free slots in one round trip.
        consume_many = getattr(self.broker, "consume_many", None)
        while not self._stopping:
            while self._free_slots <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            try:
                if consume_many is not None:
                    deliveries = await consume_many(min(self._free_slots, MAX_PREFETCH), 1.0)
                else:
                    delivery = await self.broker.consume(1.0)
                    deliveries = [] if delivery is None else [delivery]
                self._backend_back("worker")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged by _back_off
                await self._back_off("worker", exc)
                continue
            for delivery in deliveries:
                self._start(delivery)

    def _start(self, delivery: Delivery) -> None:
        run_id = delivery.run.id
        if run_id in self._executing:
            # Our lease ran out while the run still executes here: hold the new lease.
            self._deliveries[run_id] = (delivery, self._lease_length(delivery))
            return
        self._free_slots -= 1
        self._deliveries[run_id] = (delivery, self._lease_length(delivery))
        task = asyncio.create_task(self._execute(delivery))
        self._executing[run_id] = (task, delivery.run)
        task.add_done_callback(functools.partial(self._finished, run_id))

    def _lease_length(self, delivery: Delivery) -> float:
        return max(delivery.lease_until - self.clock.monotonic(), 0.0)

    async def _heartbeat_loop(self) -> None:
        """Renew the leases of runs executing here before they expire, so a long run is not
        handed to another worker."""
        while not self._stopping:
            await self.clock.wait(None, HEARTBEAT_INTERVAL)
            now = self.clock.monotonic()
            for run_id, (delivery, length) in list(self._deliveries.items()):
                if delivery.lease_until - now > length / 2:
                    continue
                try:
                    renewed = await self.broker.extend(delivery)
                    if renewed:
                        await self.store.touch_fire(delivery.run.task_name, delivery.run.fire_id or run_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the next beat tries again
                    log.warning("renewing the lease of run %s failed: %s", run_id, exc)
                    continue
                if not renewed:
                    log.warning("run %s lost its lease; another worker may run it again", run_id)

    def _finished(self, run_id: str, task: asyncio.Task[Any]) -> None:
        self._executing.pop(run_id, None)
        self._deliveries.pop(run_id, None)
        self._cancel_reasons.pop(task, None)
        self._free_slots += 1
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("run %s could not be completed", run_id, exc_info=task.exception())

    async def execute_now(self, plan: TaskPlan, reason: str = "manual") -> Run:
        """Run ``plan`` now in the calling coroutine, retries included; return the last attempt."""
        now = self.clock.now()
        run = Run(
            id=new_run_id(),
            task_name=plan.task.name,
            task_version=plan.task.version,
            scheduled_for=now,
            reason=reason,
            fire_id=fire_id(plan.task.name, now),
            created_at=now,
        )
        current = asyncio.current_task()
        assert current is not None
        while True:
            self._executing[run.id] = (current, run)  # stop() and cancel_task() see manual runs too
            try:
                next_run = await self._attempt(plan, run, delivery=None, follow_up=False)
            finally:
                self._executing.pop(run.id, None)
                self._cancel_reasons.pop(current, None)
            if next_run is None:
                return run
            assert run.retry_at is not None
            self._executing[next_run.id] = (current, next_run)
            try:
                await self.clock.wait(None, max((run.retry_at - self.clock.now()).total_seconds(), 0.0))
            except asyncio.CancelledError:
                reason = self._cancel_reasons.get(current)
                if reason is None:
                    raise
                await self._record_unstarted(next_run, reason, "stopped before its retry was due")
                return next_run
            finally:
                self._executing.pop(next_run.id, None)
                self._cancel_reasons.pop(current, None)
            run = next_run

    async def _record_unstarted(self, run: Run, state: RunState, reason: str) -> None:
        """Record a run that never started (removed task, stopped scheduler) and say so."""
        run.state = state
        run.reason = reason
        run.ended_at = self.clock.now()
        await self.store.record_run(run)
        log_run(run)
        if self.events.active:
            self.events.emit(ev.RunCancelled(run.ended_at, attrs.evolve(run), None))

    async def _execute(self, delivery: Delivery) -> None:
        run = delivery.run
        count = delivery.delivery_count
        if count > 1:
            previous = await self._previous_attempt(delivery)
            if previous is not None and previous.state in _RECORDED_OUTCOMES:
                await self._complete_recorded(delivery, previous)
                return
            if count > 1 + self._max_redeliveries:
                await self._poison(
                    delivery,
                    f"delivered {count} times; its worker was lost each time "
                    f"(executor.max_redeliveries={self._max_redeliveries})",
                )
                return
            run = attrs.evolve(
                run,
                id=_delivery_run_id(run.id, count),
                attempt=run.attempt + count - 1,
                reason=f"redelivered (delivery {count}): the previous worker was lost",
            )
        plan = await self.plans.for_version(run.task_name, run.task_version)
        if plan is not None and self.plans.current(run.task_name) is None and getattr(self.store, "shared", False):
            await self.reload_task(run.task_name)  # stored by another process; its notice is still on the way
        if plan is None and run.task_version > await self.store.last_version(run.task_name):
            await self._poison(delivery, f"unknown task {run.task_name!r} (version {run.task_version})")
            return
        removed = run.task_version <= self._removed_upto.get(run.task_name, 0)
        if plan is None or removed or self.plans.current(run.task_name) is None:
            await self._record_unstarted(run, RunState.CANCELLED, "task removed")
            await self.broker.ack(self._held(delivery))
            await self._release(run)
            return
        await self._attempt(plan, run, delivery=delivery, follow_up=True)

    def _held(self, delivery: Delivery) -> Delivery:
        """The newest lease this worker holds on the delivered run."""
        return self._deliveries.get(delivery.run.id, (delivery, 0.0))[0]

    async def _previous_attempt(self, delivery: Delivery) -> Run | None:
        """The run is delivered again: the record of the previous delivery's attempt, marked
        lost first if it never recorded an outcome (its worker crashed or stalled past its lease)."""
        count = delivery.delivery_count
        previous = await self.store.get_run(_delivery_run_id(delivery.run.id, count - 1))
        if previous is None or previous.state.is_final:
            return previous
        previous.state = RunState.LOST
        previous.ended_at = self.clock.now()
        previous.error_type = "WorkerLost"
        previous.error_message = (
            f"worker {previous.worker or '(unknown)'} was lost: its lease expired before it recorded an "
            f"outcome; the run was delivered again (delivery {count})"
        )
        await self.store.record_run(previous)
        log_run(previous)
        return previous

    async def _complete_recorded(self, delivery: Delivery, previous: Run) -> None:
        """The previous worker recorded the outcome but was lost before acknowledging it: do
        what it had left to do (queue the retry, start dependents) without running it again.
        Its events are emitted again: an alert may repeat, but none is lost."""
        log.warning("run %s: its outcome (%s) was recorded but its worker was lost before acknowledging it; "
                    "completing it without running it again", previous.id, previous.state.value)
        next_run = self._retry_of(previous) if previous.state is RunState.RETRYING else None
        at = next_run.created_at if next_run is not None else None
        if not await self.broker.ack(self._held(delivery), next_run, at):
            return
        plan = await self.plans.for_version(previous.task_name, previous.task_version)
        if plan is not None:
            await self._after_outcome(plan, previous, self.events.active)
        if next_run is None:
            await self._release(previous)

    def _retry_of(self, run: Run) -> Run:
        """The next attempt of a run recorded as retrying."""
        assert run.retry_at is not None
        return Run(
            id=new_run_id(),
            task_name=run.task_name,
            task_version=run.task_version,
            scheduled_for=run.scheduled_for,
            attempt=run.attempt + 1,
            reason="retry",
            fire_id=run.fire_id,
            created_at=run.retry_at,
        )

    async def _poison(self, delivery: Delivery, reason: str) -> None:
        """Move a run that must not run again to the dead-letter queue, record it as poison,
        and emit ``RunFailed`` so alerting hears of it."""
        now = self.clock.now()
        run = attrs.evolve(
            delivery.run,
            id=_delivery_run_id(delivery.run.id, delivery.delivery_count),
            state=RunState.POISON,
            reason="dead-lettered",
            started_at=None,
            ended_at=now,
            error_type="Poison",
            error_message=reason,
            worker=self.worker_id,
        )
        held = self._held(delivery)
        dead_letter = getattr(self.broker, "dead_letter", None)
        moved = await dead_letter(held, reason) if dead_letter is not None else await self.broker.ack(held)
        if not moved:
            return  # another worker holds it now and decides
        await self.store.record_run(run)
        log_run(run)
        if self.events.active:
            self.events.emit(ev.RunFailed(now, attrs.evolve(run), None))
        await self._release(run)

    async def _attempt(self, plan: TaskPlan, run: Run, *, delivery: Delivery | None, follow_up: bool) -> Run | None:
        """Execute one attempt and record its outcome; return the next attempt if one is due
        (already queued, with the ack, when the run came from the broker)."""
        task = plan.task
        clock = self.clock
        run.state = RunState.RUNNING
        run.started_at = clock.now()
        run.worker = self.worker_id
        await self.store.record_run(run)
        log_run(run)
        emit = self.events.active
        if emit:
            self.events.emit(ev.RunStarted(run.started_at, attrs.evolve(run), task))
        output = BoundedOutput(self._output_limit)
        context = ExecutionContext(run, task, plan.prepared, output, self._run_sync, plan.settings)
        started = clock.monotonic()
        error: BaseException | None = None
        result: Any = None
        state = RunState.SUCCEEDED
        current = set_current_run(run)
        try:
            if plan.timeout is None:
                result = await plan.task_type.execute(context)
            else:
                async with asyncio.timeout(plan.timeout) as deadline:
                    result = await plan.task_type.execute(context)
        except asyncio.CancelledError as exc:
            reason = self._cancel_reasons.get(asyncio.current_task())  # type: ignore[arg-type]
            if reason is None:
                raise
            state, error = reason, exc
        except TimeoutError as exc:
            if plan.timeout is not None and deadline.expired():
                state, error = RunState.TIMED_OUT, exc
            else:
                state, error = RunState.FAILED, exc
        except Exception as exc:  # noqa: BLE001 - a task's failure is data, not a crash
            state, error = RunState.FAILED, exc
        finally:
            reset_current_run(current)
        run.ended_at = clock.now()
        run.duration = clock.monotonic() - started
        run.output = output.getvalue()
        next_run = None
        if error is None:
            run.state = RunState.SUCCEEDED
            if result is not None:
                text = repr(result)
                run.result = text if len(text) <= _RESULT_LIMIT else text[:_RESULT_LIMIT] + "…"
        else:
            self._describe_error(run, state, error, plan)
            if state in FAILED_STATES and plan.retry.should_retry(run.attempt):
                delay = plan.retry.delay_after(run.attempt, self._random)
                run.state = RunState.RETRYING
                run.retry_at = run.ended_at + timedelta(seconds=delay)
                next_run = self._retry_of(run)
            else:
                run.state = state
        if delivery is not None and state is RunState.INTERRUPTED and self._durable:
            # Shutting down with a shared broker: hand the run back now rather than after its lease.
            run.retry_at = None
            run.error_message = "interrupted by worker shutdown; handed back to the queue for another worker"
            await self.store.record_run(run)
            log_run(run)
            await self.broker.release(self._held(delivery))
            self._forget_local(run)
            return None
        fire_over = next_run is None and follow_up
        fire_ended = False
        if delivery is None:
            await self.store.record_run(run)
        else:
            # The retry is queued in the same step as the ack: a crash between them cannot lose it.
            then, at = (next_run, next_run.created_at) if next_run is not None else (None, None)
            held = self._held(delivery)
            if self._record_and_ack is not None:
                # One step, and only while the lease is ours: a stale result overwrites nothing.
                acked = fire_ended = await self._record_and_ack(run, held, then, at, fire_over)
            else:
                await self.store.record_run(run)
                acked = await self.broker.ack(held, then, at)
            if not acked:
                await self._record_duplicate(run)
                return None
        log_run(run)
        await self._after_outcome(plan, run, emit)
        if fire_over:
            if fire_ended:
                self._forget_local(run)
            else:
                await self._release(run)
        return next_run

    async def _record_duplicate(self, run: Run) -> None:
        """The run's lease was lost before its outcome was acked: another worker was given it,
        so this execution is a duplicate. Recorded as such; no retry, no dependents, no events."""
        outcome = run.state.value
        run.state = RunState.DUPLICATE
        run.retry_at = None
        run.reason = f"finished ({outcome}) after its lease was lost; another worker was given the run"
        await self.store.record_run(run)
        log_run(run)
        self._forget_local(run)

    def _describe_error(self, run: Run, state: RunState, error: BaseException, plan: TaskPlan) -> None:
        if state is RunState.TIMED_OUT:
            run.error_type = "TimeoutError"
            run.error_message = f"did not finish within its timeout of {plan.timeout:g}s"
            return
        if state in (RunState.CANCELLED, RunState.INTERRUPTED):
            run.error_type = "Cancelled"
            run.error_message = (
                "cancelled by cancel_task()" if state is RunState.CANCELLED else "interrupted by scheduler shutdown"
            )
            return
        run.error_type = getattr(error, "remote_type", None) or type(error).__name__
        run.error_message = getattr(error, "remote_message", None) or str(error)
        remote = getattr(error, "remote_traceback", None)
        run.traceback = remote or "".join(traceback.format_exception(error))

    async def _after_outcome(self, plan: TaskPlan, run: Run, emit: bool) -> None:
        task = plan.task
        state = run.state
        if emit:
            event_class = {
                RunState.SUCCEEDED: ev.RunSucceeded,
                RunState.RETRYING: ev.RunRetrying,
                RunState.FAILED: ev.RunFailed,
                RunState.TIMED_OUT: ev.RunFailed,
                RunState.CANCELLED: ev.RunCancelled,
                RunState.INTERRUPTED: ev.RunCancelled,
            }[state]
            self.events.emit(event_class(run.ended_at, attrs.evolve(run), task))
        children = self.plans.children_of(task.name)
        if not children:
            return
        if state is RunState.SUCCEEDED:
            for child in children:
                await self._parent_succeeded(child, task.name)
        elif state in FAILED_STATES:
            await self._skip_descendants(task.name, f"upstream failed: {task.name}")

    async def _parent_succeeded(self, child: str, parent: str) -> None:
        plan = self.plans.current(child)
        if plan is None or not plan.task.enabled:
            return
        if await self.store.parent_succeeded(child, parent, plan.parents):
            await self.dispatch(plan, self.clock.now(), f"parents succeeded: {', '.join(sorted(plan.parents))}")

    async def _skip_descendants(self, name: str, reason: str) -> None:
        seen: set[str] = set()
        frontier = self.plans.children_of(name)
        now = self.clock.now()
        while frontier:
            child = frontier.pop(0)
            if child in seen:
                continue
            seen.add(child)
            plan = self.plans.current(child)
            if plan is None:
                continue
            await self.store.reset_parents(child)
            await self._record_skip(plan, now, reason)
            frontier.extend(self.plans.children_of(child))

    async def _release(self, run: Run) -> None:
        """The fire of ``run`` is over (no further attempt): it no longer counts as active."""
        if run.fire_id is not None:
            await self.store.end_fire(run.task_name, run.fire_id)
        self._forget_local(run)

    def _forget_local(self, run: Run) -> None:
        active = self._active.get(run.task_name)
        if active is not None:
            active.discard(run.fire_id)
            if not active:
                del self._active[run.task_name]
        if not self._active:
            self.idle.set()

    def forget_task(self, name: str, version: int) -> None:
        """The task was removed: its queued runs (up to ``version``) are cancelled when delivered.
        (The store forgets its active fires, so they do not count towards ``max_instances`` of
        a task added again.)"""
        self._removed_upto[name] = max(version, self._removed_upto.get(name, 0))
        self._active.pop(name, None)
        if not self._active:
            self.idle.set()

    def _run_sync(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if kwargs:
            function = functools.partial(function, **kwargs)
        threads = self._threads
        if threads is None:
            threads = self._threads = DaemonThreadPool(self._max_threads, thread_name_prefix="sts-run")
        return loop.run_in_executor(threads, function, *args)

    # -- control ---------------------------------------------------------------------------------------

    def interrupt_all(self) -> None:
        """Interrupt every run in flight now (a second Ctrl-C); they are recorded as interrupted."""
        for task, _ in list(self._executing.values()):
            if not task.done():
                self._cancel_reasons[task] = RunState.INTERRUPTED
                task.cancel()

    def cancel_runs(self, name: str) -> int:
        """Cancel the runs of ``name`` executing now; they are recorded as cancelled."""
        count = 0
        for task, run in list(self._executing.values()):
            if run.task_name == name and not task.done():
                self._cancel_reasons[task] = RunState.CANCELLED
                task.cancel()
                count += 1
        return count

    async def wait_idle(self) -> None:
        """Wait until no run is queued or executing (tests, ``run`` of a one-shot scheduler)."""
        await self.idle.wait()



#: Outcomes a worker records before it acknowledges the run: a redelivery after one of these
#: completes the run instead of executing it again.
_RECORDED_OUTCOMES = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.TIMED_OUT, RunState.RETRYING, RunState.CANCELLED}
)


def _delivery_run_id(run_id: str, delivery_count: int) -> str:
    """The id of the attempt a delivery executes: the run's own id on its first delivery, a
    derived one on each redelivery, so every delivery has its own run record."""
    return run_id if delivery_count <= 1 else f"{run_id}.d{delivery_count}"
