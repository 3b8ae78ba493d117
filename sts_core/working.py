"""The worker loop: take runs from the broker, execute them through their task type under a
renewed lease, record each outcome, queue retries and start dependents."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import attrs

from sts_core import events as ev
from sts_core.activefires import ActiveFires
from sts_core.clock import Clock
from sts_core.errors import BackendError, BackendUnavailableError
from sts_core.eventbus import EventBus
from sts_core.inflight import RunsInFlight
from sts_core.interfaces import Delivery, ExecutionContext
from sts_core.isolation import Isolation
from sts_core.outages import BackendOutages
from sts_core.outcomes import Outcomes, next_attempt
from sts_core.output import BoundedOutput
from sts_core.plans import TaskPlan, TaskPlans, reload_code
from sts_core.plugins import PluginManager
from sts_core.redelivery import RECORDED_OUTCOMES, Redelivery, delivery_run_id
from sts_core.run import FAILED_STATES, Run, RunState, fire_id, new_run_id, recordable_result
from sts_core.runcontext import reset_current_run, set_current_run
from sts_core.runlog import log_run
from sts_core.steps import BackendSteps, Retrying
from sts_core.synccalls import SyncCalls
from sts_core.tracebacks import task_traceback

log = logging.getLogger("sts.engine")

#: How often leases of runs executing here are checked; a lease is renewed at half its length.
HEARTBEAT_INTERVAL = 1.0
#: The most runs a worker takes from a broker with ``consume_many`` in one call.
MAX_PREFETCH = 32
#: How often a manual fire queued behind its task's active runs looks again for a free instance.
WAIT_FOR_INSTANCE_POLL = 1.0


class WorkerLoop:
    """The worker loop, the heartbeat that renews its leases, and manual runs (``execute_now``).

    Owns the ``executor.concurrency`` slots (a delivered run holds one until its user code is
    over), the side tasks dropping repeated deliveries, and whether it is stopping.

    Given the store and broker, the backend ``steps``, the clock, the plans, the event bus, the
    plugin manager and ``resolve_function`` (to load a task's code again), ``outages`` (its
    backoff and beats), ``retrying`` (a backend step through an outage), the local ``active``
    fires, the ``in_flight`` registry it fills, ``redelivery`` (runs delivered again),
    ``outcomes`` (what follows a recorded outcome), ``sync_calls`` (the threads that run
    synchronous functions), and from the engine, which applies task
    changes: ``reload_task`` and ``removed_upto`` (queued runs of a removed task up to that
    version are cancelled when delivered). The ``executor.*`` settings come as numbers.
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
        plugins: PluginManager,
        resolve_function: Callable[[Any], Callable[..., Any]],
        outages: BackendOutages,
        retrying: Retrying,
        active: ActiveFires,
        in_flight: RunsInFlight,
        redelivery: Redelivery,
        outcomes: Outcomes,
        sync_calls: SyncCalls,
        reload_task: Callable[[str], Awaitable[TaskPlan | None]],
        removed_upto: dict[str, int],
        worker_id: str,
        concurrency: int,
        output_limit: int,
        max_redeliveries: int,
    ) -> None:
        self.store = store
        self.broker = broker
        self.steps = steps
        self.clock = clock
        self.plans = plans
        self.events = events
        self.plugins = plugins
        self.resolve_function = resolve_function
        self.worker_id = worker_id
        self._redelivery = redelivery
        self._reload_task = reload_task
        self._removed_upto = removed_upto
        # Bound once: the per-run path calls them without an attribute hop.
        self._retrying = retrying
        self._loop_alive = outages.loop_alive
        self._back_off = outages.back_off
        self._beats = outages.beats
        self._release = active.release
        self._forget_local = active.forget
        self._follow_up = outcomes.follow_up
        self._call_sync = sync_calls.call
        self._held = in_flight.held
        self._executing = in_flight.executing
        self._leases = in_flight.leases
        self._cancel_reasons = in_flight.cancel_reasons
        self._shared = steps.shared
        self._durable = steps.durable
        # A broker that may deliver a run twice: a first delivery starts only if its run id was never recorded.
        self._starts_once = steps.starts_once
        # A broker whose delivery count may skip a number (a delivery nobody ran) says so.
        self._counts_may_skip = steps.counts_may_skip
        self._concurrency = concurrency
        self._output_limit = output_limit
        self._max_redeliveries = max_redeliveries
        # A run redelivered after a lost worker runs alone here (sts_core.isolation).
        self._isolation = Isolation()
        self._random = random.Random()
        self._stopping = False
        # Delivered runs whose user code has not finished: each holds one of the concurrency slots.
        self._holding_slot: set[str] = set()
        self._free_slots = concurrency
        self._slot_freed = asyncio.Event()
        self._side_tasks: set[asyncio.Task[Any]] = set()  # copies being dropped (see _start)

    def bind_to_loop(self) -> None:
        """Start afresh on the running loop (an asyncio event belongs to one loop)."""
        self._stopping = False
        self._free_slots = self._concurrency - len(self._holding_slot)
        self._slot_freed = asyncio.Event()

    def stop(self) -> None:
        """End the loops (they are cancelled too; runs in flight are the engine's to wait for)."""
        self._stopping = True

    async def stop_side_tasks(self) -> None:
        """Cancel the handling of repeated deliveries still going on."""
        for task in list(self._side_tasks):
            task.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)

    async def run(self) -> None:
        """The worker loop, until ``stop``."""
        # At most `executor.concurrency` runs execute at once; a plain counter is cheaper than a
        # Semaphore on this path, and this loop is its only taker. A broker with consume_many
        # hands over as many runs as there are free slots in one round trip.
        consume_many = self.steps.consume_many
        while not self._stopping:
            while self._free_slots <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            if self._isolation.closed:  # a suspect runs alone here: take nothing until it is over
                await self._isolation.until_open()
                continue
            try:
                if consume_many is not None:
                    deliveries = await consume_many(min(self._free_slots, MAX_PREFETCH), 1.0)
                else:
                    delivery = await self.broker.consume(1.0)
                    deliveries = [] if delivery is None else [delivery]
                self._loop_alive("worker")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged by _back_off
                await self._back_off("worker", exc)
                continue
            now = self.clock.monotonic()  # one read for the batch: _start does not wait
            for delivery in deliveries:
                self._start(delivery, now)

    def _start(self, delivery: Delivery, now: float | None = None) -> None:
        """Execute ``delivery`` in a task of its own (``now``: the monotonic time it was taken)."""
        if now is None:
            now = self.clock.monotonic()
        run_id = delivery.run.id
        if run_id in self._executing:
            held = self._leases.get(run_id, (None, 0.0))[0]
            if self._starts_once and held is not None:
                # The broker may deliver a run twice: a copy, unless our own lease ran out.
                self._track(asyncio.create_task(self._copy_or_renewal(held, delivery)))
                return
            # Our lease ran out while the run still executes here: hold the new lease.
            self._leases[run_id] = (delivery, max(delivery.lease_until - now, 0.0))
            return
        self._free_slots -= 1
        self._holding_slot.add(run_id)
        self._leases[run_id] = (delivery, max(delivery.lease_until - now, 0.0))
        task = asyncio.create_task(self.execute_delivered(delivery))
        self._executing[run_id] = (task, delivery.run)
        task.add_done_callback(functools.partial(self._finished, run_id))

    async def _copy_or_renewal(self, held: Delivery, delivery: Delivery) -> None:
        """A run executing here was delivered again: with our lease still current it is a second
        copy of its message (dropped and recorded as a duplicate), else our lease ran out and the
        new one is held instead."""
        run_id = delivery.run.id
        if await self._retrying(f"checking the lease of run {run_id}", lambda: self.broker.extend(held)):
            executing = self._executing.get(run_id)
            plan = self.plans.current(delivery.run.task_name)
            existing = executing[1] if executing is not None else delivery.run
            await self._redelivery.drop_copy(delivery, delivery.run, existing, plan.task if plan is not None else None)
        elif run_id in self._executing:
            self._leases[run_id] = (delivery, self._lease_length(delivery))

    def _track(self, task: asyncio.Task[Any]) -> None:
        """Keep a side task referenced until it ends, logging a failure."""
        self._side_tasks.add(task)
        task.add_done_callback(self._side_task_done)

    def _side_task_done(self, task: asyncio.Task[Any]) -> None:
        self._side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("handling a repeated delivery failed", exc_info=task.exception())

    def _lease_length(self, delivery: Delivery) -> float:
        return max(delivery.lease_until - self.clock.monotonic(), 0.0)

    async def heartbeat(self) -> None:
        """Renew the leases of runs executing here before they expire, so a long run is not
        handed to another worker."""
        while not self._stopping:
            await self.clock.wait(None, HEARTBEAT_INTERVAL)
            if self._free_slots <= 0 or self._isolation.closed:  # the worker loop is parked: busy, not stuck
                self._beats["worker"] = self.clock.now()
            now = self.clock.monotonic()
            for run_id, (delivery, length) in list(self._leases.items()):
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
                if not renewed and self._leases.get(run_id, (None, 0.0))[0] is delivery:
                    del self._leases[run_id]  # nothing left to renew
                    if run_id in self._executing:
                        log.warning("run %s lost its lease; another worker may run it again", run_id)

    def _finished(self, run_id: str, task: asyncio.Task[Any]) -> None:
        self._executing.pop(run_id, None)
        self._leases.pop(run_id, None)
        self._cancel_reasons.pop(task, None)
        self._free_slot(run_id)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, BackendError):
            log.warning("run %s could not be completed (%s); it is delivered again when its lease ends", run_id, error)
        elif error is not None:
            log.error("run %s could not be completed", run_id, exc_info=error)

    def _free_slot(self, run_id: str) -> None:
        """The delivered run's user code is over: its slot may take the next run (whose delivery
        then goes out with this run's outcome, where the backend sends steps together)."""
        if run_id in self._holding_slot:
            self._holding_slot.discard(run_id)
            self._free_slots += 1
            self._slot_freed.set()

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
                await self.record_unstarted(next_run, reason, "stopped before its retry was due")
                return next_run
            finally:
                self._executing.pop(next_run.id, None)
                self._cancel_reasons.pop(current, None)
            run = next_run

    async def record_unstarted(self, run: Run, state: RunState, reason: str) -> None:
        """Record a run that never started (removed task, stopped scheduler) and say so."""
        run.state = state
        run.reason = reason
        run.ended_at = self.clock.now()
        await self.store.record_run(run)
        log_run(run)
        if self.events.active:
            self.events.emit(ev.RunCancelled(run.ended_at, attrs.evolve(run), None))

    async def execute_delivered(self, delivery: Delivery) -> None:
        """Execute a run the broker delivered (or complete, poison or cancel it)."""
        run = delivery.run
        count = delivery.delivery_count
        first_start = count == 1
        if count > 1:
            redelivery = self._redelivery
            previous, attempts = await redelivery.previous_attempts(delivery)
            if previous is not None and previous.state in RECORDED_OUTCOMES:
                await redelivery.complete_recorded(delivery, previous)
                return
            # Poison: lost too often while it ran alone (sts_core.isolation); hand-backs never count.
            poison = attempts.poison_reason(delivery, self._max_redeliveries, counts_may_skip=self._counts_may_skip)
            if poison is not None:
                await redelivery.poison(delivery, poison)
                return
            if previous is None and self._starts_once:
                # No earlier attempt left a record: the earlier deliveries never reached a worker
                # (the broker's count skipped). It starts as the run itself, once, like a first
                # delivery, so that a copy of it is recognised.
                first_start = True
            else:
                handed_back = previous is not None and previous.state is RunState.INTERRUPTED
                run = attrs.evolve(
                    run,
                    id=delivery_run_id(run.id, count),
                    attempt=run.attempt + count - 1,
                    reason=f"redelivered (delivery {count}): the previous worker "
                    + ("handed it back when it stopped" if handed_back else "was lost"),
                    isolated=attempts.suspect,
                )
        plans = self.plans
        current = plans.current(run.task_name)
        if current is not None and current.task.version == run.task_version:
            plan: TaskPlan | None = current  # the common case, without a coroutine
        else:
            plan = await plans.for_version(run.task_name, run.task_version)
            current = plans.current(run.task_name)
            if plan is not None and current is None and self._shared:
                await self._reload_task(run.task_name)  # stored by another process; its notice is still on the way
                current = plans.current(run.task_name)
        if plan is None and run.task_version > await self.store.last_version(run.task_name):
            await self._redelivery.poison(delivery, f"unknown task {run.task_name!r} (version {run.task_version})")
            return
        removed = run.task_version <= self._removed_upto.get(run.task_name, 0)
        if plan is None or removed or current is None:
            await self.record_unstarted(run, RunState.CANCELLED, "task removed")
            await self.broker.ack(self._held(delivery))
            await self._release(run)
            return
        if run.waits_for_instance:
            if not await self._take_instance(plan, run, delivery):
                return
            run = attrs.evolve(run, waits_for_instance=False)
        # A suspect runs alone: it waits for the runs executing here (and they for it), at most
        # isolation.PATIENCE; then it runs beside them and is not recorded as isolated.
        isolation = self._isolation
        alone = run.isolated
        if not isolation.enter_now(alone):
            alone = run.isolated = await isolation.enter(alone, self.clock)
        try:
            await self._attempt(plan, run, delivery=delivery, follow_up=True, first_start=first_start)
        finally:
            isolation.leave(alone)

    async def _take_instance(self, plan: TaskPlan, run: Run, delivery: Delivery) -> bool:
        """A manual fire queued behind its task's active runs: True when it may start now (it now
        counts toward ``max_instances``); else it goes back to the queue as it was delivered (in the
        ack, so it cannot be lost), to be tried again ``WAIT_FOR_INSTANCE_POLL`` seconds later. It
        keeps its run id: the id ``fire_now`` returned is the one recorded, and a copy a lost ack
        leaves behind is recognised as one."""
        task = plan.task
        fire = run.fire_id or run.id
        what = f"starting run {run.id} of {task.name}"
        if await self._retrying(what, lambda: self.store.begin_fire(task.name, fire, task.max_instances)):
            return True
        at = self.clock.now() + timedelta(seconds=WAIT_FOR_INSTANCE_POLL)
        await self._retrying(what, lambda: self.broker.ack(self._held(delivery), delivery.run, at))
        return False

    async def _attempt(
        self, plan: TaskPlan, run: Run, *, delivery: Delivery | None, follow_up: bool, first_start: bool = False
    ) -> Run | None:
        """Execute one attempt and record its outcome; return the next attempt if one is due
        (already queued, with the ack, when the run came from the broker). ``first_start``: the
        run's first start, which a broker that may deliver twice has the store check."""
        task = plan.task
        clock = self.clock
        run.state = RunState.RUNNING
        run.started_at = clock.now()
        run.worker = self.worker_id
        what = f"recording the start of run {run.id}"
        if self._starts_once and delivery is not None and first_start:
            existing = await self._retrying(what, lambda: self.steps.start_once(run))
            ours = existing is not None and (existing.worker, existing.started_at) == (run.worker, run.started_at)
            if existing is not None and not ours:  # (ours: a retried step whose first reply was lost)
                await self._redelivery.drop_copy(delivery, run, existing, task)
                return None
        else:
            await self._retrying(what, lambda: self.store.record_run(run))
        log_run(run)
        emit = self.events.active
        if emit:
            self.events.emit(ev.RunStarted(run.started_at, attrs.evolve(run), task))
        output = BoundedOutput(self._output_limit)
        # The thread pool pauses the deadline while the run's function waits for a thread.
        deadline = None if plan.timeout is None else asyncio.timeout(plan.timeout)
        run_sync = functools.partial(self._call_sync, run, deadline, task.max_instances)
        started = clock.monotonic()
        error: BaseException | None = None
        result: Any = None
        state = RunState.SUCCEEDED
        current = set_current_run(run)
        try:
            if plan.load_error is not None:  # stored by a process that could load it: try again here
                reload_code(plan, self.plugins, self.resolve_function)
                self.plans.note_problem(plan)
            context = ExecutionContext(run, task, plan.prepared, output, run_sync, plan.settings)
            if deadline is None:
                result = await plan.task_type.execute(context)
            else:
                async with deadline:
                    result = await plan.task_type.execute(context)
        except asyncio.CancelledError as exc:
            reason = self._cancel_reasons.get(asyncio.current_task())  # type: ignore[arg-type]
            if reason is None:
                raise
            state, error = reason, exc
        except TimeoutError as exc:
            if deadline is not None and deadline.expired():
                state, error = RunState.TIMED_OUT, exc
            else:
                state, error = RunState.FAILED, exc
        except Exception as exc:  # noqa: BLE001 - a task's failure is data, not a crash
            state, error = RunState.FAILED, exc
        finally:
            reset_current_run(current)
            if delivery is not None:
                self._free_slot(delivery.run.id)
        run.ended_at = clock.now()
        run.duration = clock.monotonic() - started
        run.output = output.getvalue()
        next_run = None
        if error is None:
            run.state = RunState.SUCCEEDED
            if result is not None:
                run.result = recordable_result(result)
        else:
            self._describe_error(run, state, error, plan)
            if state in FAILED_STATES and plan.retry.should_retry(run.attempt):
                delay = plan.retry.delay_after(run.attempt, self._random)
                run.state = RunState.RETRYING
                run.retry_at = run.ended_at + timedelta(seconds=delay)
                next_run = next_attempt(run)
            else:
                run.state = state
        if delivery is not None and state is RunState.INTERRUPTED and self._durable:
            # Shutting down with a shared broker: hand the run back now rather than after its lease.
            run.retry_at = None
            run.error_message = "interrupted by worker shutdown; handed back to the queue for another worker"
            try:
                await self.store.record_run(run)
                await self.broker.release(self._held(delivery))
            except BackendUnavailableError as exc:  # stopping: no waiting; the lease will end instead
                log.warning("run %s could not be handed back (%s); it is delivered again when its lease ends",
                            run.id, exc)
            log_run(run)
            await self._follow_up(plan, run, emit)  # RunCancelled; an interrupted run starts no dependents
            self._forget_local(run)
            return None
        fire_over = next_run is None and follow_up
        if delivery is None:
            await self._retrying(f"recording the outcome of run {run.id}", lambda: self.store.record_run(run))
            log_run(run)
            await self._follow_up(plan, run, emit)
            if fire_over:
                await self._release(run)
            return next_run
        if await self._finish(plan, run, delivery, next_run, fire_over, emit):
            return next_run
        await self._redelivery.record_duplicate(run, task)
        return None

    async def _finish(
        self, plan: TaskPlan, run: Run, delivery: Delivery, next_run: Run | None, fire_over: bool, emit: bool
    ) -> bool:
        """Record a delivered run's outcome, start its dependents, ack it and queue its retry
        (in the ack, so a crash cannot lose it). False, with nothing done, when the lease was
        lost: another worker has the run.

        A run without dependents takes one fenced step (``BackendSteps.finish_run``: atomic where
        the backend offers ``AtomicSteps``). A run with dependents is recorded (fenced) first, its
        dependents started, and only then acked: a worker lost in between is redelivered, and the
        redelivery completes the recorded outcome, starting the dependents idempotently.
        """
        what = f"recording the outcome of run {run.id}"
        then, at = (next_run, next_run.created_at) if next_run is not None else (None, None)
        finish_run = self.steps.finish_run
        if not self.plans.children_of(run.task_name):
            done = await self._retrying(what, lambda: finish_run(run, self._held(delivery), then, at, fire_over))
            if done is False:
                return False
            log_run(run)
            if done is None:  # recorded, not acked (only where the steps are taken one by one)
                _warn_recorded_not_acked(run)
                return True
            await self._follow_up(plan, run, emit)
            if fire_over:
                self._forget_local(run)
            return True
        if not await self._retrying(what, lambda: finish_run(run, self._held(delivery), None, None, False, False)):
            return False
        log_run(run)
        await self._follow_up(plan, run, emit)
        ack = self.broker.ack
        if not await self._retrying(f"acknowledging run {run.id}", lambda: ack(self._held(delivery), then, at)):
            _warn_recorded_not_acked(run)
            return True
        if fire_over:
            await self._release(run)
        return True

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
        run.traceback = remote or task_traceback(error, self._internal_packages(plan))

    @staticmethod
    def _internal_packages(plan: TaskPlan) -> tuple[str, str]:
        """The modules whose frames lead a task's traceback: the kernel and its task type's module
        (only that module: an application's own task type may share a package with its jobs)."""
        return "sts_core", type(plan.task_type).__module__


def _warn_recorded_not_acked(run: Run) -> None:
    # Recorded, then the lease was lost (say, a broker connection dropped): the run is delivered
    # again, and that delivery completes the recorded outcome (its retry, its dependents, its
    # events) without running it again.
    log.warning("run %s: its lease was lost after its outcome was recorded; the worker given it completes it", run.id)
