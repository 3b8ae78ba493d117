"""The roles plugins fill: triggers, task types, stores, brokers and backends.

These are ``typing.Protocol`` classes: a plugin implements the methods, it does not inherit.
All times are timezone-aware UTC ``datetime`` objects unless stated otherwise.

For backends this module is the whole contract: the engine uses nothing a store, broker or
backend does not declare here. ``Store`` and ``Broker`` are mandatory; each optional capability
is a runtime-checkable Protocol of its own, and ``sts_core.steps`` takes its documented fallback
where a backend does not offer it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import attrs

from sts_core.errors import Problem
from sts_core.run import Run, RunState
from sts_core.task import Task

# --- triggers --------------------------------------------------------------------------------


class Trigger(Protocol):
    """Answers "when next?" for one task. Pure: no state changes between calls."""

    def first_fire(self, now: datetime) -> datetime | None:
        """The first fire time of a task added at ``now`` (UTC); may lie in the past (a
        one-shot ``at`` that has passed), in which case the misfire policy decides."""

    def next_fire(self, previous: datetime) -> datetime | None:
        """The fire time after the fire scheduled for ``previous`` (UTC), strictly later,
        or None when the trigger is exhausted (one-shots, ``end`` reached)."""

    def describe(self) -> str:
        """A short human description for tables, e.g. ``every 30s`` or ``cron */5 * * * * (UTC)``."""


TriggerFactory = Callable[[Mapping[str, Any], ZoneInfo], Trigger]
"""Builds a trigger from its spec and the task's time zone; raises ValueError when invalid."""


# --- task types ------------------------------------------------------------------------------


class OutputBuffer(Protocol):
    """Collects a run's output, keeping at most a configured number of characters."""

    def write(self, text: str) -> None: ...


@attrs.define(slots=True)
class ExecutionContext:
    """Everything a task type needs to execute one run.

    ``prepared`` is what the task type's ``prepare`` returned for this task version;
    ``output`` collects the run's output; ``run_sync(fn, *args)`` runs a blocking callable
    in the scheduler's bounded thread pool and returns an awaitable of its result; the run's
    timeout is paused while the call waits for a free thread.
    """

    run: Run
    task: Task
    prepared: Any
    output: OutputBuffer
    run_sync: Callable[..., Any]
    settings: Mapping[str, Any]


class TaskType(Protocol):
    """What runs. One object per type, shared by all tasks of that type."""

    def validate(self, task: Task, resolve_function: Callable[[Any], Callable[..., Any]]) -> Sequence[Problem]:
        """Problems with the task's type-specific options (empty when valid).

        ``resolve_function(ref)`` imports an import path or looks up a registered name,
        raising ``LookupError`` with the reason.
        """

    def prepare(self, task: Task, resolve_function: Callable[[Any], Callable[..., Any]]) -> Any:
        """Work done once per task version (resolve the function, split the command)."""

    async def execute(self, context: ExecutionContext) -> Any:
        """Run the task once and return its result; raise to fail the attempt.

        The engine enforces the timeout by cancelling this coroutine: a type that owns an
        external resource (a child process) must release it on ``CancelledError``.
        """


# --- persistence -----------------------------------------------------------------------------


@attrs.frozen(slots=True)
class DueFire:
    """One due fire of a task: the task's name and its scheduled (nominal) time."""

    task_name: str
    scheduled_for: datetime


@runtime_checkable
class Store(Protocol):
    """Durable state: tasks with version history, next fire times, runs, dependency progress.

    Every method below and the ``shared`` attribute are mandatory; ``StoreContract``
    (``sts_core.testing``) holds a store to them. The optional capabilities a store may add are
    the Protocols after this one (``WatchedStore``, ``StartsRunsOnce``, ``ReadsTasksByName``,
    ``Outbox``); the kernel's adapter (``sts_core.steps``) checks once which a store offers and
    takes the documented fallback for the others.
    """

    #: True when several processes share this store (it outlives the process): the engine then
    #: reloads a plan it cannot vouch for, retries a step while the store is unreachable, and sends
    #: independent steps side by side. False for a store private to its process.
    shared: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # tasks
    async def put_task(self, task: Task, *, replace: bool = False) -> Task:
        """Store ``task`` as the next version of its name and return it with ``version`` set.

        Raises ``TaskExistsError`` if the name exists and ``replace`` is false.
        """

    async def put_tasks(self, tasks: Sequence[Task], *, replace: bool = False) -> list[Task]:
        """Store several tasks all or nothing (nothing is stored if any one is refused)."""

    async def get_task(self, name: str, version: int | None = None) -> Task | None: ...

    async def list_tasks(self) -> list[Task]: ...

    async def delete_task(self, name: str) -> bool:
        """Remove the task, its next fire time and dependency progress; True if it existed."""

    # schedule
    async def set_next_fire(self, name: str, when: datetime | None) -> None:
        """Set (or with None clear) the task's next fire time."""

    async def get_next_fire(self, name: str) -> datetime | None: ...

    async def next_due_time(self) -> datetime | None:
        """The earliest next fire time over all tasks (no scan: an index lookup)."""

    async def due_fires(self, now: datetime, limit: int) -> list[DueFire]:
        """Up to ``limit`` fires due at or before ``now``, earliest first."""

    async def claim_fire(self, fire: DueFire, next_fire: datetime | None) -> bool:
        """Atomically move the task's next fire time from ``fire.scheduled_for`` to
        ``next_fire``. True for the one caller that wins; False when the fire was already
        claimed or the task changed meanwhile."""

    # runs
    async def record_run(self, run: Run) -> None:
        """Insert or update a run record (by ``run.id``), applying history retention."""

    async def get_run(self, run_id: str) -> Run | None: ...

    async def list_runs(
        self,
        task_name: str | None = None,
        states: Iterable[RunState] | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Runs, newest first."""

    # dependencies
    async def parent_succeeded(self, child: str, parent: str, required: frozenset[str], token: str) -> bool:
        """Note that ``parent`` succeeded (in the run ``token``). When with it every parent in
        ``required`` has succeeded since the child's last reset, reset the child's progress and
        return True: atomically, so exactly one caller starts the child. Asked again with the
        token that completed the set, it answers True again (a repeated step), changing nothing."""

    async def reset_parents(self, child: str) -> None:
        """Forget the child's parent progress (it was skipped)."""

    # fires in flight, for max_instances across processes
    async def begin_fire(self, name: str, fire_id: str, limit: int) -> bool:
        """Count ``fire_id`` as active for ``name`` unless ``limit`` fires already are
        (atomically); True if it now counts. Entries expire after a backend-defined time
        unless ``touch_fire`` renews them, so a crashed process cannot block a task for good."""

    async def touch_fire(self, name: str, fire_id: str) -> None:
        """Renew an active fire's expiry (its run still executes)."""

    async def end_fire(self, name: str, fire_id: str) -> None:
        """``fire_id`` is over (no further attempt): it no longer counts."""

    async def last_version(self, name: str) -> int:
        """The highest version ever stored under ``name`` (0 if never), deleted or not:
        tells a run of a removed task from a run of a task that never existed."""


@runtime_checkable
class WatchedStore(Protocol):
    """Optional, for a ``shared`` store: it tells the processes sharing it what the others change.

    Without it, a shared store's plans are reloaded before each fire (correct, one read more).
    """

    #: True while change notices arrive (say, while subscribed): a watcher that has applied every
    #: notice it received then knows every task as stored, and fires without reading it again.
    notices_live: bool

    def watch(self, on_change: Callable[[str | None], None]) -> None:
        """Call ``on_change(name)`` (on the event loop) when any process stores or deletes task
        ``name``, and ``on_change(None)`` when notices may have been missed (after a reconnect),
        meaning "reload every task". Watchers are kept until the store is closed."""

    def watch_due(self, on_due: Callable[[str], None]) -> None:
        """Call ``on_due(name)`` when another process makes task ``name``'s next fire the earliest
        of all (a scheduler sleeping until a later one looks again). A store may report nothing
        here and send such changes to ``watch``'s watchers instead."""


@runtime_checkable
class StartsRunsOnce(Protocol):
    """Optional: the atomic first start of a run, for brokers that may deliver a run twice.

    Without it the kernel reads the run and then records it: correct unless two copies of one
    run start at the same instant in two processes."""

    async def start_run(self, run: Run) -> Run | None:
        """Record ``run`` unless a record with its id exists, atomically, and return the existing
        record (storing nothing) if one does; None when ``run`` was recorded now."""


@runtime_checkable
class ReadsTasksByName(Protocol):
    """Optional: several tasks in one round trip. Without it the kernel asks ``get_task`` per name."""

    async def get_tasks(self, names: Sequence[str]) -> dict[str, Task]:
        """The current versions of the tasks of ``names`` that are stored, by name (names not
        stored are left out; a name asked twice appears once)."""


@runtime_checkable
class Outbox(Protocol):
    """Optional: a store that stages runs for a broker in another server (redis + rabbitmq).

    The run is staged in the same atomic step that claims its fire, so a scheduler that dies before
    the broker confirms its publish loses nothing: another scheduler's sweep publishes it (the broker
    may then hold two copies, which ``StartsRunsOnce`` tells apart). Used only where the backend
    offers no ``AtomicSteps``."""

    async def stage_fire(
        self, claim: tuple[DueFire, datetime | None] | None, run: Run, limit: int, at: datetime | None
    ) -> str:
        """In one atomic step: claim the fire (if ``claim``, as ``claim_fire``), count it under
        ``limit`` (as ``begin_fire``) and stage ``run`` to be published for ``at``. Returns "lost"
        (the claim failed: nothing done), "limited" (claimed, not admitted, nothing staged) or
        "staged"."""

    async def unstage(self, run_id: str) -> None:
        """The staged run was published: forget it (idempotent)."""

    async def take_stranded(self, staged_before: datetime, limit: int) -> list[tuple[Run, datetime | None]]:
        """Up to ``limit`` runs staged before ``staged_before`` and never unstaged, each with its
        ``at``, marked taken now (so that a concurrent sweep does not take them too, until
        ``staged_before`` passes the new mark)."""


@attrs.define(slots=True, eq=False)
class Delivery:
    """A run handed to a worker under a lease. ``token`` fences stale workers.

    ``delivery_count`` counts this delivery and every earlier one; ``handed_back`` says how
    many of the earlier ones ended with ``release`` (a worker stopping gracefully), so that
    ``delivery_count - 1 - handed_back`` earlier workers were lost.
    """

    run: Run
    token: int
    lease_until: float
    delivery_count: int = 1
    handed_back: int = 0


@runtime_checkable
class Broker(Protocol):
    """Delivery of due runs to workers, with leases.

    Every method below and the three attributes are mandatory; ``BrokerContract``
    (``sts_core.testing``) holds a broker to them. Optional capabilities are the Protocols after
    this one (``ConsumesMany``, ``StopsConsuming``, ``Drains``, ``WatchesAvailability``,
    ``CountsQueues``).
    """

    #: True when queued runs outlive this process (another worker can take what this one hands
    #: back with ``release``). False: the runs die with the process; on stop the engine records
    #: the runs a ``Drains`` broker still holds as cancelled, and does not hand back interrupted ones.
    durable: bool

    #: True when the broker may deliver one run twice (a publish whose confirm was lost is
    #: repeated, and both copies arrive). The engine then starts a first delivery only if its run
    #: id was never recorded (``StartsRunsOnce``) and records a second copy as a duplicate.
    may_duplicate: bool

    #: True when ``delivery_count`` may skip a number (a delivery no worker received, say one
    #: dropped from a prefetch buffer): a run is then dead-lettered for deliveries without a
    #: recorded start only after twice as many of them as otherwise (``sts_core.isolation``),
    #: and a delivery with no earlier record starts as the run itself.
    counts_may_skip: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def enqueue(self, run: Run, at: datetime | None = None) -> None:
        """Deliver ``run`` now, or not before ``at``."""

    async def consume(self, timeout: float | None) -> Delivery | None:
        """The next ready run under a new lease, or None after ``timeout`` seconds."""

    async def extend(self, delivery: Delivery) -> bool:
        """Renew the lease; False if it was lost (the run went to another worker)."""

    async def ack(self, delivery: Delivery, then: Run | None = None, at: datetime | None = None) -> bool:
        """The run's outcome is recorded: forget it, and in the same step enqueue ``then``
        (its retry; not before ``at``) so that a crash cannot lose the retry. False (and
        nothing enqueued) if the lease was lost."""

    async def release(self, delivery: Delivery) -> bool:
        """Hand the run back for another worker at once (this worker stops); its next delivery
        counts as a redelivery. False if the lease was lost."""

    async def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Move the run to the dead-letter queue with ``reason``: it is not delivered again.
        False if the lease was lost."""

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead-lettered messages: ``{"id", "reason", "payload", "at"}``, newest first."""

    async def depth(self) -> int:
        """How many runs wait (ready and delayed)."""


@runtime_checkable
class ConsumesMany(Protocol):
    """Optional: several deliveries in one round trip (a broker behind a network). Without it
    the worker loop calls ``consume`` once per run."""

    async def consume_many(self, limit: int, timeout: float | None) -> list[Delivery]:
        """Up to ``limit`` ready runs, each under its own lease; an empty list after ``timeout``."""


@runtime_checkable
class StopsConsuming(Protocol):
    """Optional: a broker that pushes runs to a worker ahead of ``consume``."""

    async def stop_consuming(self) -> None:
        """Stop pushing, and hand back what this process holds but has not handed over, so other
        workers take it while this one finishes its runs in flight. The engine calls it first when
        a worker stops; ``consume`` may still be called afterwards."""


@runtime_checkable
class Drains(Protocol):
    """Optional, for a broker that is not ``durable``: what it still holds when the engine stops."""

    async def drain(self) -> list[Run]:
        """Remove and return every queued, unleased run (ready and delayed). The engine records
        them as cancelled instead of losing them silently."""


@runtime_checkable
class WatchesAvailability(Protocol):
    """Optional: a broker that notices its connection coming back."""

    def watch_availability(self, on_back: Callable[[], None]) -> None:
        """Call ``on_back()`` on the event loop whenever the connection comes back after a loss,
        so steps waiting out the outage try again at once (else they wait out their backoff)."""


@runtime_checkable
class CountsQueues(Protocol):
    """Optional: queue counts for metrics and health checks (``depth`` is the fallback)."""

    async def queue_counts(self) -> dict[str, int]:
        """``ready`` (due, waiting for a worker), ``delayed`` (due later: retries, scheduled
        deliveries), ``leased`` (held by a worker) and ``dead`` (in the dead-letter queue)."""


class Backend(Protocol):
    """A store and a broker built from the config."""

    store: Store
    broker: Broker


@runtime_checkable
class AtomicSteps(Protocol):
    """Optional, on a ``Backend`` whose store and broker live in one server (or one process): the
    engine's multi-step moments, each one atomic step. ``AtomicStepsContract`` holds a backend to them.

    Without them the kernel's adapter (``sts_core.steps``) takes the same steps one after the other
    through ``Store`` and ``Broker`` (or through the store's ``Outbox``): correct, with a window
    in which a process that dies leaves a step half done for the redelivery or sweep to repair.
    """

    async def claim_and_enqueue(
        self, claim: tuple[DueFire, datetime | None] | None, run: Run, limit: int, at: datetime | None,
        *, version: int | None = None,
    ) -> str:
        """In one step: with ``version``, check that ``run.task_name`` is stored in that version
        ("gone": not stored; "changed": another version is); claim the fire if ``claim`` (as
        ``Store.claim_fire``; "lost" when that fails); count ``run.fire_id`` toward ``limit`` (as
        ``Store.begin_fire``; "limited" when ``limit`` fires are active, the claim kept); queue
        ``run`` for ``at`` ("queued"). Any answer but "queued" leaves nothing queued. Asked again
        with the same run after a lost reply, it answers "queued" again and queues nothing twice."""

    async def record_and_ack(
        self, run: Run, delivery: Delivery, then: Run | None, at: datetime | None, end_fire: bool, ack: bool = True
    ) -> bool:
        """Fenced by the lease: if ``delivery``'s lease is current, record ``run``, ack the delivery
        (if ``ack``; without it the lease stays held for a later ``Broker.ack``), queue ``then`` for
        ``at`` (its retry) and end ``run.fire_id`` (if ``end_fire``), all in one step, and return
        True. Otherwise do nothing and return False: a stale worker's result overwrites nothing."""


BackendFactory = Callable[[Any, Any], Backend]
"""``factory(config, clock) -> Backend``."""

BrokerFactory = Callable[[Any, Any], Broker]
"""``factory(config, clock) -> Broker``: a broker that replaces the backend's own when the
config's ``broker`` key names it (the backend keeps providing the store)."""
