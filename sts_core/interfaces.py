"""The roles plugins fill: triggers, task types, stores, brokers and backends.

These are ``typing.Protocol`` classes: a plugin implements the methods, it does not inherit.
All times are timezone-aware UTC ``datetime`` objects unless stated otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import attrs

from sts_core.errors import Problem
from sts_core.model import Run, RunState, Task

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


class Store(Protocol):
    """Durable state: tasks with version history, next fire times, runs, dependency progress.

    A store that several processes share sets ``shared = True`` and offers
    ``watch(on_change: Callable[[str | None], None]) -> None``: it calls ``on_change(name)``
    (on the event loop) when any process stores or deletes task ``name``, and
    ``on_change(None)`` when notices may have been missed (after a reconnect), meaning
    "reload every task".
    """

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

    # Optional: ``async def start_run(self, run: Run) -> Run | None``: record ``run`` unless a
    # record with its id exists, atomically, and return the existing record (storing nothing)
    # if one does. The engine starts first deliveries with it when the broker may deliver one
    # run twice (``Broker.may_duplicate``), so a second copy is recorded as a duplicate instead
    # of running again.

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


class Broker(Protocol):
    """Delivery of due runs to workers, with leases.

    A broker that keeps nothing beyond its process sets ``durable = False`` and offers
    ``async drain() -> list[Run]`` (remove and return every queued, unleased run): on stop the
    engine records those runs as cancelled instead of losing them silently.

    A broker that may deliver one run twice sets ``may_duplicate = True``: a publish whose
    confirm was lost is repeated, and both copies arrive. With a store offering ``start_run``
    the engine then runs the first copy and records the second as a duplicate.

    A broker whose ``delivery_count`` may skip a number (it counts a delivery no worker received,
    say one dropped from a prefetch buffer) sets ``counts_may_skip = True``: a run is then dead-
    lettered for deliveries without a recorded start only after 2 * (``max_redeliveries`` + 1) of
    them, and a delivery with no earlier record starts as the run itself (checked with ``start_run``).

    A store and broker shared by several processes (``durable = True``) lets other workers
    pick up what this one hands back with ``release``. A broker behind a network may also
    offer ``async consume_many(limit, timeout) -> list[Delivery]``: up to ``limit`` ready runs
    in one round trip (an empty list after ``timeout``), each under its own lease.
    """

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

    # Optional: ``async def stop_consuming(self) -> None``: a broker that pushes runs to a worker
    # ahead of ``consume`` stops doing so and hands back what it holds but has not handed over;
    # the engine calls it first when a worker stops.

    # Optional: ``watch_availability(on_back: Callable[[], None]) -> None``: the broker calls
    # ``on_back()`` on the event loop whenever its connection comes back after a loss, so steps
    # waiting out the outage try again at once.

    # Optional: ``async def queue_counts(self) -> dict[str, int]`` with the keys ``ready`` (due,
    # waiting for a worker), ``delayed`` (due later: retries, scheduled deliveries), ``leased``
    # (held by a worker) and ``dead`` (in the dead-letter queue), for metrics and health checks.


class Backend(Protocol):
    """A store and a broker built from the config."""

    store: Store
    broker: Broker


BackendFactory = Callable[[Any, Any], Backend]
"""``factory(config, clock) -> Backend``."""

BrokerFactory = Callable[[Any, Any], Broker]
"""``factory(config, clock) -> Broker``: a broker that replaces the backend's own when the
config's ``broker`` key names it (the backend keeps providing the store)."""
