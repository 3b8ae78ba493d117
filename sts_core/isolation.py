"""Which run is charged when a worker is lost.

A worker executes many runs side by side, so a lost worker alone does not say which of them
killed it. A run whose worker was lost while it ran becomes a *suspect*: when it is delivered
again, its worker runs it alone (``Isolation``: it waits until nothing else executes there, and
nothing else starts, nor is taken from the broker, until its outcome is recorded), and its record
says so (``Run.isolated``). Only a loss while running alone is a strike toward
``executor.max_redeliveries`` (``Attempts``): a run that merely ran beside a poison run gets a
clean attempt of its own and succeeds, while the poison run is charged each time it kills a
worker on its own. Deliveries that never recorded a start (prefetched or waiting runs of a lost
worker, a backend error before the start record) are no strikes; only a generous bound
(``UNSTARTED_PER_REDELIVERY``) stops a run whose workers die before it records a start.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

import attrs

from sts_core.interfaces import Delivery
from sts_core.run import Run, RunState

#: A run is dead-lettered when more than this many times (``executor.max_redeliveries`` + 1)
#: deliveries ended with its worker lost before it recorded a start (twice as many where the
#: broker's count may skip a number). Such deliveries are no strikes: a run taken by a worker
#: that a suspect then kills, or one whose start record failed, did nothing wrong. The bound only
#: stops a run that kills its worker before it can record a start (say, while its code is
#: imported): with ``max_redeliveries`` 3, after 16 such deliveries (32 on RabbitMQ). A healthy
#: run meets a dying worker before its start only while a suspect runs alone there, at most
#: ``max_redeliveries`` + 1 times per poison run; the bound leaves room for several poison runs.
UNSTARTED_PER_REDELIVERY = 4


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
        ``UNSTARTED_PER_REDELIVERY`` x (``limit`` + 1) deliveries (twice that where the broker's
        count may skip) went to workers lost before it recorded a start."""
        count = delivery.delivery_count
        if self.lost_alone > limit:
            return (f"delivered {count} times; its worker was lost {self.lost_alone} times while it ran alone "
                    f"(executor.max_redeliveries={limit})")
        bound = UNSTARTED_PER_REDELIVERY * (limit + 1) * (2 if counts_may_skip else 1)
        unstarted = self.unstarted(delivery)
        if unstarted > bound:
            return (f"delivered {count} times, {unstarted} of them to workers lost before it recorded a start "
                    f"(at most {bound}: {UNSTARTED_PER_REDELIVERY * (2 if counts_may_skip else 1)} x "
                    f"(executor.max_redeliveries={limit} + 1))")
        return None


class Isolation:
    """Who may execute on this worker now: a suspect runs alone, other runs side by side.

    ``enter`` admits attempts first come, first served: an attempt waits while one ahead of it
    waits, a suspect until nothing else executes, any other while a suspect executes. While a
    suspect executes or waits, ``closed`` is True and the worker takes no more runs
    (``until_open``). Costs O(1) per attempt while no suspect is around.
    """

    def __init__(self) -> None:
        self._beside = 0  # attempts executing side by side
        self._alone = False  # a suspect executes
        self._suspects_waiting = 0
        self._queue: deque[tuple[bool, asyncio.Future[None]]] = deque()
        self._parked: list[asyncio.Future[None]] = []  # the worker loop, waiting to take runs

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

    async def enter(self, alone: bool) -> None:
        """Wait until the attempt may start, and admit it; ``leave`` when its outcome is recorded."""
        if self.enter_now(alone):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (alone, future)
        self._queue.append(entry)
        self._suspects_waiting += alone
        try:
            await future
        except asyncio.CancelledError:
            if entry in self._queue:
                self._queue.remove(entry)
                self._suspects_waiting -= alone
                self._admit_waiting()
            elif not future.cancelled():  # admitted just as it was cancelled
                self.leave(alone)
            raise

    def leave(self, alone: bool) -> None:
        """An admitted attempt is over."""
        if alone:
            self._alone = False
        else:
            self._beside -= 1
        self._admit_waiting()

    async def until_open(self) -> None:
        """Wait until no suspect executes or waits here (the worker loop, before taking runs)."""
        while self.closed:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._parked.append(future)
            try:
                await future
            finally:
                if future in self._parked:
                    self._parked.remove(future)

    def _fits(self, alone: bool) -> bool:
        return not self._alone and (self._beside == 0 or not alone)

    def _admit(self, alone: bool) -> None:
        if alone:
            self._alone = True
        else:
            self._beside += 1

    def _admit_waiting(self) -> None:
        queue = self._queue
        while queue and (queue[0][1].done() or self._fits(queue[0][0])):
            alone, future = queue.popleft()
            self._suspects_waiting -= alone
            if not future.done():  # (done: cancelled while waiting)
                self._admit(alone)
                future.set_result(None)
        if not self.closed and self._parked:
            for future in self._parked:
                if not future.done():
                    future.set_result(None)
            self._parked.clear()
