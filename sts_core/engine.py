"""The engine: the scheduler loop (fires due tasks) and the worker loop (executes runs).

Both are asyncio tasks on one loop; with a shared backend they may also run in separate
processes. The scheduler loop sleeps until the earliest due time in the store (or until a
task change wakes it), claims each due fire atomically and hands a ``Run`` to the broker.
The worker loop consumes runs, executes them through their task type, records the outcome,
retries with backoff, and starts dependents whose parents have all succeeded.

This module holds what both loops share (state, start and stop, backoff while the backend is
away, task changes from other processes); the loops are in ``firing``, ``working`` and
``redelivery``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sts_core.clock import Clock
from sts_core.errors import BackendError, BackendUnavailableError
from sts_core.eventbus import EventBus
from sts_core.firing import Firing
from sts_core.functions import import_errors_once
from sts_core.health import Health
from sts_core.interfaces import Backend, Delivery
from sts_core.model import Run, RunState, Task
from sts_core.plans import PlanDefaults, TaskPlan, TaskPlans, compile_plan
from sts_core.plugins import PluginManager
from sts_core.redelivery import Redelivery
from sts_core.steps import BackendSteps
from sts_core.threadpool import DaemonThreadPool
from sts_core.working import Working

log = logging.getLogger("sts.engine")
T = TypeVar("T")

#: How long a loop waits after an unexpected error before retrying.
LOOP_RETRY_DELAY = 1.0
#: While the backend is unreachable, loops retry after a delay doubling up to this (seconds),
#: or sooner when the backend says it is back (a shared store's watch resyncs and wakes them).
MAX_BACKOFF = 5.0
#: How many first fire times of added tasks a shared store is sent side by side.
SCHEDULE_TOGETHER = 1000
#: How long ``stop`` lets the scheduler loop finish the fires it is handing to the broker.
STOP_PASS_GRACE = 2.0


class Engine(Firing, Working, Redelivery):
    """Runs the scheduler and worker loops over one backend.

    The loops live in ``Firing`` (``sts_core.firing``) and ``Working`` (``sts_core.working``),
    redeliveries in ``Redelivery`` (``sts_core.redelivery``); this class holds the state they
    share, starts and stops them, and applies task changes other processes make.
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
        self.store = backend.store
        self.broker = backend.broker
        self.clock = clock
        self.resolve_function = resolve_function
        self.scheduler_id = scheduler_id
        self.worker_id = f"{socket.gethostname()}:{scheduler_id}"
        # ``owner``: the scheduler this engine works for, handed to event listeners.
        self.events = EventBus(plugins.event_listeners(plugins.switched_off(config)), scheduler=owner)
        self.defaults = PlanDefaults.from_config(config)
        self.plans = TaskPlans(self.compile, self.store.get_task)
        # fire ids this engine dispatched whose runs are not over yet (for wait_idle); the store
        # counts active fires across processes for max_instances
        self._active: dict[str, set[str]] = {}
        # runs executing here (worker and manual runs) by the id of the run as delivered, and for
        # worker runs the lease we hold and its length
        self._executing: dict[str, tuple[asyncio.Task[Any], Run]] = {}
        # Delivered runs whose user code has not finished: each holds one of `executor.concurrency` slots.
        self._holding_slot: set[str] = set()
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
        # task name -> calls of its sync function abandoned after their run ended and still running
        self._hung_calls: Counter[str] = Counter()
        self._hung_lock = threading.Lock()  # pool threads count down too
        self._output_limit = int(config.get("executor.output_limit", 65536))
        self._max_redeliveries = int(config.get("executor.max_redeliveries", 3))
        # The backend's steps, chosen once from what it offers (its atomic steps, an outbox, or one by one).
        self.steps = steps = BackendSteps(backend, clock, lambda what, step: self._retrying(what, step))
        # A store other processes change too: plans may lag behind it and are reloaded on demand.
        self._shared = steps.shared
        if not self._shared:
            # Nothing to wait out in one process: take each step directly (the hot path's cost).
            self._retrying = _take_step  # type: ignore[method-assign]
        self._durable = steps.durable
        # A broker that may deliver a run twice: a first delivery starts only if its run id was never recorded.
        self._starts_once = steps.starts_once
        # A broker whose delivery count may skip a number (a delivery nobody ran) says so.
        self._counts_may_skip = steps.counts_may_skip
        self._next_sweep = 0.0
        self.roles: tuple[str, ...] = ()
        self.beats: dict[str, datetime] = {}  # loop name -> when it last finished a step
        self._unavailable: dict[str, float] = {}  # loop name -> current backoff, while the backend is away
        self._backing_off: set[asyncio.Event] = set()
        self._changes: asyncio.Queue[str | None] | None = None
        # Notices received but not applied yet, by task name (None: every task): such a plan may be stale.
        self._unapplied: Counter[str | None] = Counter()
        self._watching = False
        self._watching_broker = False
        self._side_tasks: set[asyncio.Task[Any]] = set()  # copies being dropped (see Working._start)
        # A process without a worker never sees its runs end: it does not track them for wait_idle.
        self._local_worker = True
        self._max_batch = int(config.get("scheduler.max_batch", 1000))
        self._random = random.Random()
        self._clock_offset = 0.0
        self._bind_to_loop()

    def _bind_to_loop(self) -> None:
        # asyncio primitives belong to the loop that first uses them; a scheduler that is
        # started again after stop() may run on a new loop.
        self._wake = asyncio.Event()
        self._free_slots = self._concurrency - len(self._holding_slot)
        self._slot_freed = asyncio.Event()
        self.idle = asyncio.Event()
        if not self._active:
            self.idle.set()

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
        threads = self._threads
        return Health(
            running=running,
            scheduler_id=self.scheduler_id,
            roles=self.roles if running else (),
            runs_in_flight=len(self._executing),
            beats=dict(self.beats),
            backend_unavailable=bool(self._unavailable),
            task_problems=self.plans.problems(),
            abandoned_threads=0 if threads is None else threads.abandoned_threads,
            waiting_for_thread=0 if threads is None else threads.waiting,
        )

    def wake(self) -> None:
        """Make the scheduler loop look at the store again (a task changed)."""
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, *, scheduler: bool = True, worker: bool = True) -> None:
        """Start the loops as asyncio tasks on the running loop."""
        self._stopping = False
        self._local_worker = worker
        self.roles = tuple(role for role, on in (("scheduler", scheduler), ("worker", worker)) if on)
        self.beats = {}
        self._bind_to_loop()
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
            steps.watch_availability(self._retry_now)  # once: the broker keeps its watchers
            self._watching_broker = True
        if scheduler:
            self._loops.append(asyncio.create_task(self._scheduler_loop(), name="sts-scheduler"))
        if worker:
            self._loops.append(asyncio.create_task(self._worker_loop(), name="sts-worker"))
            self._loops.append(asyncio.create_task(self._heartbeat_loop(), name="sts-heartbeat"))

    async def stop(self, grace: float) -> None:
        """Stop firing, let runs in flight finish for ``grace`` seconds, then interrupt them."""
        self._stopping = True
        self._wake.set()
        self._retry_now()  # a loop backing off from an outage ends now
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
        for task in list(self._side_tasks):
            task.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)
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
            await self._record_unstarted(run, RunState.CANCELLED, "the scheduler stopped before it ran")
            await self._release(run)

    def close(self) -> None:
        """Release threads (does not wait for threads still running a timed-out function)."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        self.events.close()

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
        await self._wait_for_backend(delay)

    async def _wait_for_backend(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less if a shared store resyncs meanwhile (the backend is back)."""
        retry_now = asyncio.Event()
        self._backing_off.add(retry_now)
        try:
            await self.clock.wait(retry_now, delay)
        finally:
            self._backing_off.discard(retry_now)

    async def _retrying(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """Take a backend step for a run this worker holds, retrying while the backend is
        unreachable (one warning, then a delay doubling up to ``MAX_BACKOFF``, or sooner when
        it resyncs). Meanwhile the heartbeat keeps trying to renew the lease; if the lease was
        lost by the time the backend returns, the step's own fencing says so."""
        delay = LOOP_RETRY_DELAY
        warned = False
        while True:
            try:
                result = await step()
            except BackendUnavailableError as exc:
                if not warned:
                    log.warning("%s: %s; retrying until it is back", what, exc)
                    warned = True
                await self._wait_for_backend(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if warned:
                log.warning("%s: done, the backend is back", what)
            return result

    def _loop_alive(self, loop: str) -> None:
        """``loop`` finished a step: note when (for ``health()``), and say so if the backend had been away."""
        self.beats[loop] = self.clock.now()
        if self._unavailable and self._unavailable.pop(loop, None) is not None:
            log.warning("%s loop: the backend is reachable again", loop)

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
                self._retry_now()

    def _retry_now(self) -> None:
        """The backend is back (a store resynced, a broker reconnected): steps waiting out an
        outage try again at once rather than at the end of their backoff."""
        for retry_now in self._backing_off:
            retry_now.set()

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
        self._active.pop(name, None)
        if not self._active:
            self.idle.set()

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


def _take_step(what: str, step: Callable[[], Awaitable[T]]) -> Awaitable[T]:
    """``Engine._retrying`` for a backend in this process: the step itself, no retrying."""
    return step()
