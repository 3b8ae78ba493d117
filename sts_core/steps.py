"""The backend steps the engine takes: one API, whatever a backend offers beyond the mandatory
``Store`` and ``Broker`` Protocols (``sts_core.interfaces``).

``BackendSteps`` is built once per engine. It checks the backend against the Protocols (a missing
mandatory member is an error naming it) and chooses, once, how each multi-step moment is taken:

- a backend with ``AtomicSteps`` (memory, redis) claims and queues a fire in one step, and records
  and acks an outcome in one step: the adapter hands out the backend's own methods (no extra call
  on the hot path);
- a store with an ``Outbox`` under a broker in another server (redis + rabbitmq) stages each run
  in the step that claims its fire, then publishes and unstages it; ``publish_stranded`` sweeps up
  what a dead scheduler staged;
- anything else takes the steps one after the other through ``Store`` and ``Broker`` (a third
  party's backend written from the Protocols alone).

Optional capabilities (``consume_many``, ``stop_consuming``, ``drain``, watches, ``start_run``,
``get_tasks``, ``queue_counts``) get their documented fallback here, so the engine never asks what a backend has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sts_core.interfaces import (
    AtomicSteps,
    Backend,
    Broker,
    ConsumesMany,
    CountsQueues,
    Delivery,
    Drains,
    DueFire,
    Outbox,
    ReadsTasksByName,
    StartsRunsOnce,
    StopsConsuming,
    Store,
    WatchedStore,
    WatchesAvailability,
)
from sts_core.run import Run
from sts_core.task import Task

log = logging.getLogger("sts.engine")

#: ``retrying(what, step)``: take a backend step, waiting out an outage (``BackendOutages.retrying``).
Retrying = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
#: A claim: the due fire and the next fire time to move it to.
Claim = tuple[DueFire, datetime | None]

#: With an outbox: a run staged longer ago than this without being published was left by a
#: scheduler that died (or is stuck); the sweep publishes it.
OUTBOX_GRACE = 15.0
#: The most stranded runs one sweep publishes.
OUTBOX_SWEEP_BATCH = 100


class BackendContractError(TypeError):
    """A backend's store or broker lacks a member its Protocol makes mandatory."""


def check_backend(backend: Backend) -> None:
    """Raise ``BackendContractError`` naming what the backend's store or broker lacks of the
    mandatory ``Store`` and ``Broker`` Protocols."""
    _require(backend.store, Store, "store")
    _require(backend.broker, Broker, "broker")


def _require(part: Any, protocol: type, role: str) -> None:
    missing = [name for name in _members(protocol) if not hasattr(part, name)]
    if missing:
        raise BackendContractError(
            f"the backend's {role} ({type(part).__module__}.{type(part).__qualname__}) does not implement "
            f"sts_core.interfaces.{protocol.__name__}: it lacks {', '.join(missing)}"
        )


def _members(protocol: type) -> list[str]:
    """The attributes and methods ``protocol`` declares (its own, not ``Protocol``'s)."""
    members = vars(protocol)
    names = set(members.get("__annotations__", {}))
    names |= {name for name, value in members.items() if callable(value) and not name.startswith("_")}
    return sorted(names)


class BackendSteps:
    """The steps the engine takes on a backend, chosen once from what the backend offers.

    Attributes the engine reads: ``shared``, ``durable``, ``counts_may_skip``, ``starts_once``
    (the broker may deliver a run twice: first deliveries start with ``start_once``), ``outbox``
    (``publish_stranded`` has work to do), ``watches`` (the store sends change notices).
    """

    def __init__(self, backend: Backend, clock: Any, retrying: Retrying) -> None:
        check_backend(backend)
        store, broker = backend.store, backend.broker
        self.store: Store = store
        self.broker: Broker = broker
        self.clock = clock
        self._retrying = retrying
        self.shared = bool(store.shared)
        self.durable = bool(broker.durable)
        self.counts_may_skip = bool(broker.counts_may_skip)
        self.starts_once = bool(broker.may_duplicate)
        self.watches = isinstance(store, WatchedStore)
        self.outbox = False
        # Checked once: isinstance against a runtime-checkable Protocol is slow.
        self._starts_runs = isinstance(store, StartsRunsOnce)
        self._reads_many = isinstance(store, ReadsTasksByName)
        # The hot path's steps are bound once: the backend's own method where it has one.
        self.claim_and_dispatch: Callable[..., Awaitable[str]]
        self.finish_run: Callable[..., Awaitable[bool | None]]
        if isinstance(backend, AtomicSteps):
            self.claim_and_dispatch = backend.claim_and_enqueue
            self.finish_run = backend.record_and_ack
        else:
            self.outbox = isinstance(store, Outbox)
            self.claim_and_dispatch = self._claim_and_stage if self.outbox else self._claim_then_enqueue
            self.finish_run = self._record_then_ack
        #: ``consume_many(limit, timeout)`` where the broker offers it (else None: the worker loop
        #: calls ``broker.consume``, without a wrapper's extra coroutine per run).
        self.consume_many: Callable[[int, float | None], Awaitable[list[Delivery]]] | None = (
            broker.consume_many if isinstance(broker, ConsumesMany) else None
        )

    # -- firing ---------------------------------------------------------------------------------

    # claim_and_dispatch(claim, run, limit, at, *, version=None) -> str: the contract of
    # ``AtomicSteps.claim_and_enqueue``; the fallbacks below keep it, taking the steps one by one
    # (the version check is a read before the claim there, not part of one atomic step).

    async def _check_version(self, name: str, version: int | None) -> str | None:
        if version is None:
            return None
        stored = await self.store.get_task(name)
        if stored is None:
            return "gone"
        return None if stored.version == version else "changed"

    async def _claim_then_enqueue(
        self, claim: Claim | None, run: Run, limit: int, at: datetime | None, *, version: int | None = None
    ) -> str:
        store = self.store
        refused = await self._check_version(run.task_name, version)
        if refused is not None:
            return refused
        if claim is not None and not await store.claim_fire(*claim):
            return "lost"  # another scheduler fired it, or the task changed meanwhile
        if not await store.begin_fire(run.task_name, run.fire_id or run.id, limit):
            return "limited"
        # Claimed: from here the run must reach the broker, so wait out an outage.
        broker = self.broker
        await self._retrying(f"queuing run {run.id} of {run.task_name}", lambda: broker.enqueue(run, at))
        return "queued"

    async def _claim_and_stage(
        self, claim: Claim | None, run: Run, limit: int, at: datetime | None, *, version: int | None = None
    ) -> str:
        refused = await self._check_version(run.task_name, version)
        if refused is not None:
            return refused
        outcome = await self.store.stage_fire(claim, run, limit, at)  # type: ignore[attr-defined]
        if outcome != "staged":
            return outcome
        await self._publish_staged(run, at)
        return "queued"

    async def _publish_staged(self, run: Run, at: datetime | None) -> None:
        """Hand a staged run to the broker (waiting out an outage), then unstage it. A crash in
        between leaves it staged: the sweep publishes it again and the copy is recorded as a
        duplicate, not run twice."""
        what = f"queuing run {run.id} of {run.task_name}"
        broker, store = self.broker, self.store
        await self._retrying(what, lambda: broker.enqueue(run, at))
        await self._retrying(what, lambda: store.unstage(run.id))  # type: ignore[attr-defined]

    async def publish_stranded(self) -> None:
        """Publish runs another scheduler staged but never published (it died in between); nothing
        to do without an outbox."""
        if not self.outbox:
            return
        before = self.clock.now() - timedelta(seconds=OUTBOX_GRACE)
        for run, at in await self.store.take_stranded(before, OUTBOX_SWEEP_BATCH):  # type: ignore[attr-defined]
            log.warning("run %s of %s was claimed by a scheduler that did not queue it (it stopped or died); "
                        "queuing it now", run.id, run.task_name)
            await self._publish_staged(run, at)

    # -- working --------------------------------------------------------------------------------

    # finish_run(run, delivery, then, at, end_fire, ack=True) -> True | False | None: the contract
    # of ``AtomicSteps.record_and_ack`` (True: done; False: the lease was lost, nothing done). The
    # stepwise fallback may also answer None: recorded, but the lease was lost before the ack, so
    # the worker given the run next completes it.

    async def _record_then_ack(
        self, run: Run, delivery: Delivery, then: Run | None, at: datetime | None, end_fire: bool, ack: bool = True
    ) -> bool | None:
        # Each step waits out an outage on its own: once the run is recorded, a lease lost meanwhile
        # must not make the outcome look unrecorded (it would be recorded again as a duplicate).
        store, broker, retrying = self.store, self.broker, self._retrying
        what = f"recording the outcome of run {run.id}"
        if not await retrying(what, lambda: broker.extend(delivery)):
            return False  # lost before anything was recorded: another worker has the run
        await retrying(what, lambda: store.record_run(run))
        if ack:
            if not await retrying(what, lambda: broker.ack(delivery, then, at)):
                return None
        elif then is not None:
            await retrying(what, lambda: broker.enqueue(then, at))
        if end_fire and run.fire_id is not None:
            fire = run.fire_id
            await retrying(f"ending fire {fire}", lambda: store.end_fire(run.task_name, fire))
        return True

    async def start_once(self, run: Run) -> Run | None:
        """Record the first start of ``run`` unless its id is recorded already; then return that
        record, storing nothing (a second copy of the run was delivered)."""
        store = self.store
        if self._starts_runs:
            return await store.start_run(run)  # type: ignore[attr-defined]
        existing = await store.get_run(run.id)
        if existing is not None:
            return existing
        await store.record_run(run)
        return None

    async def stop_consuming(self) -> None:
        """Tell a broker that pushes runs ahead of ``consume`` to stop (nothing to do otherwise)."""
        broker = self.broker
        if isinstance(broker, StopsConsuming):
            await broker.stop_consuming()

    async def drain(self) -> list[Run]:
        """The queued runs a broker that is not durable still holds, removed from it: they die with
        this process. Empty for a durable broker, or one that cannot say."""
        broker = self.broker
        if self.durable or not isinstance(broker, Drains):
            return []
        return await broker.drain()

    async def queue_counts(self) -> dict[str, int] | None:
        """The broker's runs by state (``CountsQueues``), or None when it does not count them."""
        broker = self.broker
        return await broker.queue_counts() if isinstance(broker, CountsQueues) else None

    # -- watching -------------------------------------------------------------------------------

    def watch(self, on_change: Callable[[str | None], None], on_due: Callable[[str], None]) -> None:
        """Have a ``WatchedStore`` report task changes to ``on_change`` and new earliest fires to
        ``on_due`` (call once: the store keeps its watchers). Nothing happens for other stores."""
        store = self.store
        if isinstance(store, WatchedStore):
            store.watch(on_change)
            store.watch_due(on_due)

    @property
    def notices_live(self) -> bool:
        """True while the store's change notices arrive."""
        return self.watches and bool(self.store.notices_live)  # type: ignore[attr-defined]

    def watch_availability(self, on_back: Callable[[], None]) -> None:
        """Have a broker that notices its connection coming back call ``on_back`` (call once)."""
        broker = self.broker
        if isinstance(broker, WatchesAvailability):
            broker.watch_availability(on_back)

    # -- reading --------------------------------------------------------------------------------

    async def get_tasks(self, names: Sequence[str]) -> dict[str, Task]:
        """The stored tasks of ``names``, by name (one round trip where the store offers it)."""
        store = self.store
        if self._reads_many:
            return await store.get_tasks(names)  # type: ignore[attr-defined]
        unique = list(dict.fromkeys(names))
        found = await asyncio.gather(*(store.get_task(name) for name in unique))
        return {name: task for name, task in zip(unique, found, strict=True) if task is not None}
