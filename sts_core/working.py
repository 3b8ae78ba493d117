"""The worker loop: take runs from the broker, execute them through their task type under a
renewed lease, record each outcome, queue retries and start dependents. Part of
``sts_core.engine.Engine``."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import attrs

from sts_core import events as ev
from sts_core.clock import Clock
from sts_core.errors import BackendError, BackendUnavailableError, TaskStillRunningError
from sts_core.eventbus import EventBus
from sts_core.interfaces import Delivery, ExecutionContext
from sts_core.model import FAILED_STATES, Run, RunState, fire_id, new_run_id, recordable_result
from sts_core.output import BoundedOutput
from sts_core.plans import TaskPlan, TaskPlans, reload_code
from sts_core.redelivery import RECORDED_OUTCOMES, delivery_run_id
from sts_core.runcontext import reset_current_run, set_current_run
from sts_core.runlog import log_run
from sts_core.threadpool import DaemonThreadPool
from sts_core.tracebacks import task_traceback

log = logging.getLogger("sts.engine")

#: How often leases of runs executing here are checked; a lease is renewed at half its length.
HEARTBEAT_INTERVAL = 1.0
#: The most runs a worker takes from a broker with ``consume_many`` in one call.
MAX_PREFETCH = 32
#: How often a manual fire queued behind its task's active runs looks again for a free instance.
WAIT_FOR_INSTANCE_POLL = 1.0
#: ``executor.max_abandoned_threads`` when the config has no such key.
DEFAULT_MAX_ABANDONED = 32


class Working:
    """The worker loop's half of the engine."""

    # Provided by Engine (sts_core.engine), which combines the parts of the engine.
    config: Any
    store: Any
    broker: Any
    clock: Clock
    plans: TaskPlans
    events: EventBus
    beats: dict[str, datetime]
    # and, from Firing, Redelivery and Engine: dispatch, _record_skip,
    # _previous_attempts, _complete_recorded, _poison, _record_duplicate, _drop_copy, _retrying, reload_task, steps
    # and the engine's state

    # -- worker loop --------------------------------------------------------------------------------

    async def _worker_loop(self) -> None:
        # At most `executor.concurrency` runs execute at once; a plain counter is cheaper than a
        # Semaphore on this path, and this loop is its only taker. A broker with consume_many
        # hands over as many runs as there are free slots in one round trip.
        consume_many = self.steps.consume_many
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
                self._loop_alive("worker")
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
            held = self._deliveries.get(run_id, (None, 0.0))[0]
            if self._starts_once and held is not None:
                # The broker may deliver a run twice: a copy, unless our own lease ran out.
                self._track(asyncio.create_task(self._copy_or_renewal(held, delivery)))
                return
            # Our lease ran out while the run still executes here: hold the new lease.
            self._deliveries[run_id] = (delivery, self._lease_length(delivery))
            return
        self._free_slots -= 1
        self._holding_slot.add(run_id)
        self._deliveries[run_id] = (delivery, self._lease_length(delivery))
        task = asyncio.create_task(self._execute(delivery))
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
            await self._drop_copy(delivery, delivery.run, existing, plan.task if plan is not None else None)
        elif run_id in self._executing:
            self._deliveries[run_id] = (delivery, self._lease_length(delivery))

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

    async def _heartbeat_loop(self) -> None:
        """Renew the leases of runs executing here before they expire, so a long run is not
        handed to another worker."""
        while not self._stopping:
            await self.clock.wait(None, HEARTBEAT_INTERVAL)
            if self._free_slots <= 0:  # the worker loop is parked until a run ends: busy, not stuck
                self.beats["worker"] = self.clock.now()
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
                if not renewed and self._deliveries.get(run_id, (None, 0.0))[0] is delivery:
                    del self._deliveries[run_id]  # nothing left to renew
                    if run_id in self._executing:
                        log.warning("run %s lost its lease; another worker may run it again", run_id)

    def _finished(self, run_id: str, task: asyncio.Task[Any]) -> None:
        self._executing.pop(run_id, None)
        self._deliveries.pop(run_id, None)
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
        first_start = count == 1
        if count > 1:
            previous, lost = await self._previous_attempts(delivery)
            if previous is not None and previous.state in RECORDED_OUTCOMES:
                await self._complete_recorded(delivery, previous)
                return
            # Poison: lost while running more than max_redeliveries times (recorded attempts), or
            # delivered so often without a hand-back that its workers must die before recording a
            # start (where the broker's count may skip a number, only at twice the allowance).
            unaccounted = count - 1 - delivery.handed_back  # hand-backs at graceful shutdown do not count
            limit = self._max_redeliveries
            if lost > limit:
                await self._poison(delivery, f"delivered {count} times; its worker was lost {lost} times "
                                             f"(executor.max_redeliveries={limit})")
                return
            if unaccounted > (2 * (limit + 1) if self._counts_may_skip else limit):
                await self._poison(delivery, f"delivered {count} times, {unaccounted} of them to workers lost "
                                             f"before recording a start (executor.max_redeliveries={limit})")
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
                )
        plan = await self.plans.for_version(run.task_name, run.task_version)
        if plan is not None and self.plans.current(run.task_name) is None and self._shared:
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
        if run.waits_for_instance:
            if not await self._take_instance(plan, run, delivery):
                return
            run = attrs.evolve(run, waits_for_instance=False)
        await self._attempt(plan, run, delivery=delivery, follow_up=True, first_start=first_start)

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

    def _held(self, delivery: Delivery) -> Delivery:
        """The newest lease this worker holds on the delivered run."""
        return self._deliveries.get(delivery.run.id, (delivery, 0.0))[0]

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
                await self._drop_copy(delivery, run, existing, task)
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
        run_sync = functools.partial(self._run_sync, run, deadline, task.max_instances)
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
                next_run = self._retry_of(run)
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
            await self._after_outcome(plan, run, emit)  # RunCancelled; an interrupted run starts no dependents
            self._forget_local(run)
            return None
        fire_over = next_run is None and follow_up
        if delivery is None:
            await self._retrying(f"recording the outcome of run {run.id}", lambda: self.store.record_run(run))
            log_run(run)
            await self._after_outcome(plan, run, emit)
            if fire_over:
                await self._release(run)
            return next_run
        if await self._finish(plan, run, delivery, next_run, fire_over, emit):
            return next_run
        await self._record_duplicate(run, task)
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
            await self._after_outcome(plan, run, emit)
            if fire_over:
                self._forget_local(run)
            return True
        if not await self._retrying(what, lambda: finish_run(run, self._held(delivery), None, None, False, False)):
            return False
        log_run(run)
        await self._after_outcome(plan, run, emit)
        ack = self.broker.ack
        if not await self._retrying(f"acknowledging run {run.id}", lambda: ack(self._held(delivery), then, at)):
            _warn_recorded_not_acked(run)
            return True
        if fire_over:
            await self._release(run)
        return True

    def _retry_of(self, run: Run) -> Run:
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

    async def _after_outcome(self, plan: TaskPlan, run: Run, emit: bool, *, repeated: bool = False) -> None:
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
            self.events.emit(event_class(run.ended_at, attrs.evolve(run), task, repeated))
        children = self.plans.children_of(task.name)
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
        plan = self.plans.current(child)
        if plan is None or not plan.task.enabled:
            return
        parent = parent_run.task_name
        what = f"starting {child} after {parent}"
        parents = plan.parents
        if await self._retrying(what, lambda: self.store.parent_succeeded(child, parent, parents, parent_run.id)):
            reason = f"parents succeeded: {', '.join(sorted(parents))}"
            when = parent_run.ended_at or self.clock.now()
            run_id = f"{parent_run.id}>{child}"
            await self._retrying(what, lambda: self.dispatch(plan, when, reason, run_id=run_id))

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
            what = f"skipping {child}"
            await self._retrying(what, lambda: self.store.reset_parents(child))  # noqa: B023 - awaited here
            await self._retrying(what, lambda: self._record_skip(plan, now, reason))  # noqa: B023
            frontier.extend(self.plans.children_of(child))

    async def _release(self, run: Run) -> None:
        """The fire of ``run`` is over (no further attempt): it no longer counts as active."""
        fire = run.fire_id
        if fire is not None:
            await self._retrying(f"ending fire {fire}", lambda: self.store.end_fire(run.task_name, fire))
        self._forget_local(run)

    def _forget_local(self, run: Run) -> None:
        active = self._active.get(run.task_name)
        if active is not None:
            active.discard(run.fire_id)
            if not active:
                del self._active[run.task_name]
        if not self._active:
            self.idle.set()

    def _run_sync(
        self,
        run: Run,
        deadline: asyncio.Timeout | None,
        max_instances: int,
        function: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Awaitable[Any]:
        """``ExecutionContext.run_sync`` for ``run``: call ``function`` in the thread pool, its
        timeout (``deadline``) counting from the call's start. Raises ``TaskStillRunningError``
        while ``max_instances`` calls of the task's earlier runs still hang in abandoned threads:
        a task that hangs holds that many threads at most, never the whole pool."""
        hung = self._hung_calls.get(run.task_name, 0)
        if hung >= max_instances:
            raise TaskStillRunningError(
                f"not started: {hung} call(s) of this task's function from earlier runs are still running in "
                f"abandoned threads (they did not return after the run timed out or was cancelled), and "
                f"max_instances={max_instances}; it starts again once they return. Run code that can hang with "
                "executor: process, whose child is killed at the timeout"
            )
        if kwargs:
            function = functools.partial(function, **kwargs)
        threads = self._threads
        if threads is None:
            threads = self._threads = DaemonThreadPool(
                self._max_threads,
                thread_name_prefix="sts-run",
                max_abandoned=int(self.config.get("executor.max_abandoned_threads", DEFAULT_MAX_ABANDONED)),
            )
        on_abandon = functools.partial(self._thread_abandoned, run, deadline)
        count_hung = functools.partial(self._count_hung, run.task_name)
        return threads.call(function, *args, deadline=deadline, on_abandon=on_abandon, count_hung=count_hung)

    def _count_hung(self, task_name: str, change: int) -> None:
        """A call of the task's function was abandoned while running (+1), or returned after that (-1).
        Called by the pool's threads as well as the loop, and kept apart from both: a call that
        returns while the scheduler is stopped, or after its pool was replaced, still counts down."""
        with self._hung_lock:
            left = self._hung_calls[task_name] + change
            if left:
                self._hung_calls[task_name] = left
            else:
                del self._hung_calls[task_name]
        if change < 0:
            log.info("task %r: a call of its function abandoned after its run ended has returned", task_name)

    def _thread_abandoned(self, run: Run, deadline: asyncio.Timeout | None, abandoned: int, replaced: bool) -> None:
        """A run's synchronous function outlived its run (a timeout, a cancellation): say so, once."""
        why = "timed out" if deadline is not None and deadline.expired() else "was cancelled"
        cap = self._threads.max_abandoned if self._threads is not None else DEFAULT_MAX_ABANDONED
        if replaced:
            log.warning(
                "task %r (run %s): its function is still running after the run %s; Python cannot stop a thread, "
                "so it is abandoned and replaced (abandoned threads still running: %d; at most %d are replaced, "
                "executor.max_abandoned_threads). Run code that can hang with executor: process or as an async "
                "function", run.task_name, run.id, why, abandoned, cap,
            )
        else:
            log.error(
                "task %r (run %s): its function is still running after the run %s; its thread is abandoned and "
                "NOT replaced: abandoned threads still running (%d) exceed executor.max_abandoned_threads=%d, so "
                "synchronous runs wait for the threads left. Run code that can hang with executor: process or as "
                "an async function", run.task_name, run.id, why, abandoned, cap,
            )
        if self.events.active:
            self.events.emit(ev.ThreadAbandoned(self.clock.now(), run.task_name, run.id, abandoned, cap, replaced))


def _warn_recorded_not_acked(run: Run) -> None:
    # Recorded, then the lease was lost (say, a broker connection dropped): the run is delivered
    # again, and that delivery completes the recorded outcome (its retry, its dependents, its
    # events) without running it again.
    log.warning("run %s: its lease was lost after its outcome was recorded; the worker given it completes it", run.id)
