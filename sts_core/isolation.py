"""Which run is charged when a worker is lost.

A worker executes many runs side by side, so a lost worker alone does not say which of them
killed it. A run whose worker was lost while it ran becomes a *suspect*: when it is delivered
again, its worker runs it alone (``Isolation``: it waits until nothing else executes there, and
nothing else starts, nor is taken from the broker, until its outcome is recorded), and its record
says so (``Run.isolated``). Only a loss while running alone is a strike toward
``executor.max_redeliveries`` (``Attempts``): a run that merely ran beside a poison run gets a
clean attempt of its own and succeeds, while the poison run is charged each time it kills a
worker on its own. A suspect waits at most ``PATIENCE`` for a moment alone, then runs beside
the others (not isolated: its loss is no strike). Deliveries that never recorded a start
(prefetched or waiting runs of a lost worker, a backend error before the start record) are no
strikes either; only a generous bound (``UNCLEAR_PER_REDELIVERY``) on such losses, and on losses
beside other runs, stops a run that kills its workers before it records a start.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

import attrs

from sts_core.clock import Clock
from sts_core.interfaces import Delivery
from sts_core.run import Run, RunState

#: How long a suspect waits for the runs executing on its worker to end so that it can run
#: alone (meanwhile the worker takes no more runs); then it runs beside them, and a loss of it
#: is no strike. Only a run longer than this (on every worker it meets) keeps a suspect from
#: running alone.
PATIENCE = 30.0

#: A run is dead-lettered when more than this many times (``executor.max_redeliveries`` + 1)
#: deliveries ended with its worker lost before it recorded a start, or while other runs
#: executed beside it (twice as many where the broker's count may skip a number). Such losses
#: are no strikes: a run taken by a worker that a suspect then kills, one whose start record
#: failed, or one that ran beside a poison run did nothing wrong. The bound only stops a run
#: that kills its worker before it can record a start (say, while its code is imported), or a
#: suspect that never finds a worker idle within ``PATIENCE``: with ``max_redeliveries`` 3, after
#: 16 such deliveries (32 on RabbitMQ). A healthy run meets a dying worker this way only while a
#: poison run is around, at most ``max_redeliveries`` + 2 times per poison run.
UNCLEAR_PER_REDELIVERY = 4


@attrs.frozen
class Attempts:
    """What the records of a run's earlier deliveries say (newest first, as looked up)."""

    #: Attempts lost while they ran (their record says they started, then no outcome).
    lost: int = 0
    #: Of those, attempts that ran alone on their worker: strikes toward ``max_redeliveries``.
    lost_alone: int = 0
    #: Earlier deliveries that left a record (they started), hand-backs at a graceful stop included.
    recorded: int = 0
    #: Records of hand-backs at a graceful stop.
    interrupted: int = 0

    @classmethod
    def of(cls, records: Iterable[Run]) -> Attempts:
        """Count ``records``, the records of a run's earlier deliveries (a record still ``running``
        that is not the newest one counts as lost: its worker never came back to it)."""
        lost = lost_alone = recorded = interrupted = 0
        for record in records:
            recorded += 1
            if record.state is RunState.INTERRUPTED:
                interrupted += 1
            elif record.state is RunState.LOST or not record.state.is_final:
                lost += 1
                lost_alone += record.isolated
        return cls(lost, lost_alone, recorded, interrupted)

    @property
    def suspect(self) -> bool:
        """True when a worker was lost while the run ran: it runs alone from now on."""
        return self.lost > 0

    def unstarted(self, delivery: Delivery) -> int:
        """How many earlier deliveries ended with their worker lost before the run recorded a start."""
        handed_back = max(delivery.handed_back, self.interrupted)
        return max(delivery.delivery_count - 1 - handed_back - (self.recorded - self.interrupted), 0)

    def poison_reason(self, delivery: Delivery, limit: int, *, counts_may_skip: bool) -> str | None:
        """Why the delivered run must not run again (dead-lettered as poison), or None.

        Poison: its worker was lost more than ``limit`` times while it ran alone, or more than
        ``UNCLEAR_PER_REDELIVERY`` x (``limit`` + 1) deliveries (twice that where the broker's
        count may skip) went to workers lost before it recorded a start or while it ran beside
        other runs."""
        count = delivery.delivery_count
        if self.lost_alone > limit:
            return (f"delivered {count} times; its worker was lost {self.lost_alone} times while it ran alone "
                    f"(executor.max_redeliveries={limit})")
        factor = UNCLEAR_PER_REDELIVERY * (2 if counts_may_skip else 1)
        unclear = self.unstarted(delivery) + self.lost - self.lost_alone
        if unclear > factor * (limit + 1):
            return (f"delivered {count} times; its worker was lost {unclear} times before it recorded a start or "
                    f"while other runs executed beside it (at most {factor} x (executor.max_redeliveries={limit} + 1))")
        return None


class _Waiter:
    """An attempt waiting at the gate."""

    __slots__ = ("admitted", "alone", "impatient")

    def __init__(self, alone: bool) -> None:
        self.alone = alone
        self.impatient = False  # a suspect that waited too long: it may run beside the others
        self.admitted = asyncio.Event()


class Isolation:
    """Who may execute on this worker now: a suspect runs alone, other runs side by side.

    ``enter`` admits attempts first come, first served: an attempt waits while one ahead of it
    waits, a suspect until nothing else executes (at most its patience, then it runs beside the
    others), any other while a suspect executes. While a suspect executes or waits, ``closed``
    is True and the worker takes no more runs (``until_open``). Costs O(1) per attempt while no
    suspect is around.
    """

    def __init__(self) -> None:
        self._beside = 0  # attempts executing side by side
        self._alone = False  # a suspect executes
        self._suspects_waiting = 0
        self._queue: deque[_Waiter] = deque()
        self._parked: list[asyncio.Event] = []  # the worker loop, waiting to take runs

    @property
    def closed(self) -> bool:
        """True while a suspect executes or waits to: the worker takes no more runs meanwhile."""
        return self._alone or self._suspects_waiting > 0

    def enter_now(self, alone: bool) -> bool:
        """Admit an attempt (``alone``: a suspect) if it may start at once; False: ``enter`` it."""
        if self._queue or not self._fits(alone):
            return False
        self._admit(alone)
        return True

    async def enter(self, alone: bool, clock: Clock, patience: float = PATIENCE) -> bool:
        """Wait until the attempt may start and admit it; ``leave`` when its outcome is recorded.
        True when it was admitted alone; a suspect that finds no moment to run alone within
        ``patience`` seconds (on ``clock``) is admitted beside the others (False)."""
        if self.enter_now(alone):
            return alone
        waiter = _Waiter(alone)
        self._queue.append(waiter)
        self._suspects_waiting += alone
        try:
            if alone and not await clock.wait(waiter.admitted, patience):
                waiter.impatient = True
                self._admit_waiting()
            await waiter.admitted.wait()
        except asyncio.CancelledError:
            if waiter in self._queue:
                self._queue.remove(waiter)
                self._suspects_waiting -= waiter.alone
                self._admit_waiting()
            else:  # admitted just as it was cancelled
                self.leave(waiter.alone)
            raise
        return waiter.alone

    def leave(self, alone: bool) -> None:
        """An admitted attempt is over (``alone``: as ``enter`` answered)."""
        if alone:
            self._alone = False
        else:
            self._beside -= 1
        self._admit_waiting()

    async def until_open(self) -> None:
        """Wait until no suspect executes or waits here (the worker loop, before taking runs)."""
        while self.closed:
            opened = asyncio.Event()
            self._parked.append(opened)
            try:
                await opened.wait()
            finally:
                if opened in self._parked:
                    self._parked.remove(opened)

    def _fits(self, alone: bool) -> bool:
        return not self._alone and (self._beside == 0 or not alone)

    def _admit(self, alone: bool) -> None:
        if alone:
            self._alone = True
        else:
            self._beside += 1

    def _admit_waiting(self) -> None:
        queue = self._queue
        while queue:
            waiter = queue[0]
            if not self._fits(waiter.alone):
                if not (waiter.impatient and self._fits(False)):
                    break
                waiter.alone = False  # it waited long enough: it runs beside the others
            queue.popleft()
            self._suspects_waiting -= waiter.impatient or waiter.alone
            self._admit(waiter.alone)
            waiter.admitted.set()
        if not self.closed and self._parked:
            for opened in self._parked:
                opened.set()
            self._parked.clear()
