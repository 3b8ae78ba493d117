"""``MemoryBroker``: ready FIFO, delayed heap and leased in-flight runs for consumers in one process.

A run is in exactly one place: ``_ready`` (deliver next), ``_delayed`` (deliver not before
its monotonic deadline) or ``_inflight`` (handed to a worker until its lease ends). A delayed
run's wall time ``at`` becomes a monotonic deadline when it is enqueued, so a jump of the
system clock afterwards neither holds it back nor releases it early. Each delivery
gets a new, rising token; ack and extend are accepted only with the current token, so a
worker whose run went to someone else cannot touch it. A lease that ended but whose run
has not been handed out again can still be acked or extended: nobody else has the run.

Consumers that find nothing wait on their own event, in arrival order; ``enqueue`` wakes
the longest-waiting one. Each waiter also sleeps no longer than the next delayed run or
the next lease end, so both are noticed without a timer task.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from datetime import datetime
from typing import Any

from sts.plugin import Delivery, Run
from sts_memory.copying import RECORD_ID, record_run, run_record

# Times this close count as reached, so float rounding never leaves a sub-microsecond sleep.
_RESOLUTION = 1e-6
# The lease queue is compacted when stale entries (acked or extended) outnumber live ones.
_LEASE_SLACK = 2
_LEASE_MIN_COMPACT = 1024
# Dead letters kept in memory (the oldest are dropped beyond this).
_DEAD_LETTERS_KEPT = 1000


# A queued run is kept as the tuple of its plain field values (``copying.run_record``): taken
# once from the caller's run, turned into a new Run for each delivery, and untracked by the
# garbage collector the first time it looks (a queue of thousands adds nothing to a full collection).
_Values = tuple[Any, ...]


class _Lease:
    """A run in flight: who may ack it (token), until when, and how often it was delivered."""

    __slots__ = ("count", "run", "until")

    def __init__(self, run: _Values, count: int, until: float) -> None:
        self.run = run
        self.count = count
        self.until = until


class _Waiter:
    """A consumer waiting for work, and when it plans to wake on its own (monotonic)."""

    __slots__ = ("event", "wake_at")

    def __init__(self, wake_at: float | None) -> None:
        self.event = asyncio.Event()
        self.wake_at = wake_at


class MemoryBroker:
    """A ``sts_core.interfaces.Broker`` for consumers in this process, with leases of ``lease_time`` seconds."""

    #: Queued runs live only in this process: whoever stops the scheduler should ``drain`` them.
    durable = False
    #: Each run is queued once and counted exactly.
    may_duplicate = False
    counts_may_skip = False

    def __init__(self, clock: Any, *, lease_time: float = 60.0) -> None:
        if lease_time <= 0:
            raise ValueError(f"lease_time: expected a duration greater than zero, got {lease_time!r}")
        self._clock = clock
        self._lease_time = lease_time
        self._ready: deque[tuple[_Values, int]] = deque()  # (run, deliveries so far)
        self._delayed: list[tuple[float, int, _Values]] = []  # (monotonic deadline, seq, run)
        self._seq = itertools.count()
        self._inflight: dict[int, _Lease] = {}
        self._leases: deque[tuple[float, int]] = deque()  # (until, token), nondecreasing until
        self._tokens = itertools.count(1)
        self._waiters: deque[_Waiter] = deque()
        self._dead: deque[dict[str, Any]] = deque(maxlen=_DEAD_LETTERS_KEPT)
        self._handed_back: dict[str, int] = {}  # run id -> releases so far, while the run is queued
        self._closed = False

    async def open(self) -> None:
        """Accept consumers again after ``close``."""
        self._closed = False

    async def close(self) -> None:
        """Wake every waiting consumer with None; queued runs are kept."""
        self._closed = True
        for waiter in self._waiters:
            waiter.event.set()
        self._waiters.clear()

    # -- producing ----------------------------------------------------------------------------

    async def enqueue(self, run: Run, at: datetime | None = None) -> None:
        """Deliver a snapshot of ``run`` now, or once the wall time ``at`` is reached.

        ``at`` is turned into a monotonic deadline here (``at`` minus the wall time now, from
        now on the monotonic clock): later jumps of the wall clock do not move it.
        """
        self.enqueue_now(run, at)

    def enqueue_now(self, run: Run, at: datetime | None = None) -> None:
        """``enqueue`` without a coroutine (for the backend's one-step moments)."""
        snapshot = run_record(run)
        if at is None:
            self._ready.append((snapshot, 0))
            self._wake_one()
            return
        if at.tzinfo is None:
            raise ValueError(f"enqueue of run {run.id!r}: expected a timezone-aware datetime for at, got {at!r}")
        clock = self._clock
        # A past ``at`` gives a deadline already reached: ready on the next consume, and ordered
        # among other due delayed runs by how long ago it was due.
        deadline = clock.monotonic() + (at - clock.now()).total_seconds()
        heapq.heappush(self._delayed, (deadline, next(self._seq), snapshot))
        if self._delayed[0][2] is snapshot and self._waiters:
            # A new earliest delayed run (perhaps due now): a waiter must recompute its sleep.
            self._wake_one()

    def _wake_one(self) -> None:
        if self._waiters:
            self._waiters.popleft().event.set()

    # -- consuming ----------------------------------------------------------------------------

    async def consume(self, timeout: float | None) -> Delivery | None:
        """The next ready run under a new lease, or None after ``timeout`` seconds (None: wait on)."""
        clock = self._clock
        delivery = self._take(clock.monotonic())
        if delivery is not None or (timeout is not None and timeout <= 0):
            return delivery
        deadline = None if timeout is None else clock.monotonic() + timeout
        while not self._closed:
            now = clock.monotonic()
            delivery = self._take(now)
            if delivery is not None:
                return delivery
            if deadline is not None and deadline - now <= _RESOLUTION:
                return None
            wake_at = self._next_wake(now, deadline)
            waiter = _Waiter(wake_at)
            self._waiters.append(waiter)
            try:
                await clock.wait(waiter.event, None if wake_at is None else max(wake_at - now, 0.0))
            except BaseException:
                self._leave(waiter)
                raise
            if not waiter.event.is_set():
                self._waiters.remove(waiter)
        return None

    async def consume_many(self, limit: int, timeout: float | None) -> list[Delivery]:
        """Up to ``limit`` ready runs, each under its own lease; an empty list after ``timeout``.

        The worker loop takes a batch per call: one coroutine and one clock read for all the
        runs ready now, rather than a ``consume`` each.
        """
        first = await self.consume(timeout)
        if first is None:
            return []
        deliveries = [first]
        if limit > 1 and self._ready:
            now = self._clock.monotonic()
            take = self._take
            while len(deliveries) < limit:
                delivery = take(now)
                if delivery is None:
                    break
                deliveries.append(delivery)
        return deliveries

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter gives up (cancelled): if it was woken for work, pass the wake-up on."""
        if not waiter.event.is_set():
            self._waiters.remove(waiter)
        elif self._ready and not self._closed:
            self._wake_one()

    def _take(self, now: float) -> Delivery | None:
        delayed = self._delayed
        if delayed and delayed[0][0] - now <= _RESOLUTION:
            self._promote_delayed(now)
        leases = self._leases
        if leases and leases[0][0] - now <= _RESOLUTION:
            self._expire_leases(now)
        if not self._ready:
            return None
        run, count = self._ready.popleft()
        token = next(self._tokens)
        until = now + self._lease_time
        self._inflight[token] = _Lease(run, count + 1, until)
        leases.append((until, token))
        if self._waiters:
            self._after_take(until)
        return Delivery(record_run(run), token, until, count + 1, self._handed_back.get(run[RECORD_ID], 0))

    def _after_take(self, until: float) -> None:
        if self._ready:
            self._wake_one()
        elif all(w.wake_at is None or w.wake_at > until for w in self._waiters):
            # Nobody would notice this lease ending: let one waiter recompute its sleep.
            self._wake_one()

    def _promote_delayed(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] - now <= _RESOLUTION:
            _, _, run = heapq.heappop(delayed)
            self._ready.append((run, 0))

    def _expire_leases(self, now: float) -> None:
        leases, inflight = self._leases, self._inflight
        expired: list[tuple[_Values, int]] = []
        while leases and leases[0][0] - now <= _RESOLUTION:
            until, token = leases.popleft()
            lease = inflight.get(token)
            if lease is not None and lease.until == until:
                del inflight[token]
                expired.append((lease.run, lease.count))
        # Redelivered runs go first: they were handed out before anything now waiting.
        self._ready.extendleft(reversed(expired))

    def _next_wake(self, now: float, deadline: float | None) -> float | None:
        wake = deadline
        self._drop_stale_leases()
        if self._leases:
            until = self._leases[0][0]
            wake = until if wake is None else min(wake, until)
        if self._delayed:
            due = max(self._delayed[0][0], now)
            wake = due if wake is None else min(wake, due)
        return wake

    def _drop_stale_leases(self) -> None:
        leases, inflight = self._leases, self._inflight
        while leases:
            until, token = leases[0]
            lease = inflight.get(token)
            if lease is not None and lease.until == until:
                return
            leases.popleft()

    # -- settling -----------------------------------------------------------------------------

    async def extend(self, delivery: Delivery) -> bool:
        """Renew the lease for ``lease_time`` from now; False if the run went to another worker."""
        lease = self._inflight.get(delivery.token)
        if lease is None:
            return False
        until = self._clock.monotonic() + self._lease_time
        lease.until = until
        self._leases.append((until, delivery.token))
        delivery.lease_until = until
        self._compact_leases()
        return True

    async def release(self, delivery: Delivery) -> bool:
        """Put the run back at the front of the ready queue (its next delivery counts as a redelivery)."""
        lease = self._inflight.pop(delivery.token, None)
        if lease is None:
            return False
        self._ready.appendleft((lease.run, lease.count))
        run_id = lease.run[RECORD_ID]
        self._handed_back[run_id] = self._handed_back.get(run_id, 0) + 1
        self._wake_one()
        self._compact_leases()
        return True

    async def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Forget the run and keep it, with ``reason``, among the dead letters."""
        lease = self._inflight.pop(delivery.token, None)
        if lease is None:
            return False
        run = record_run(lease.run)
        self._handed_back.pop(run.id, None)
        self._dead.append(
            {"id": run.id, "reason": reason, "payload": run.to_dict(), "at": self._clock.now().isoformat()}
        )
        self._compact_leases()
        return True

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters first."""
        return list(reversed(self._dead))[:limit]

    async def ack(self, delivery: Delivery, then: Run | None = None, at: datetime | None = None) -> bool:
        """Forget the run and enqueue ``then`` (if given); False if the token is stale (the run
        went to another worker), and then nothing is enqueued."""
        return self.ack_now(delivery, then, at)

    def holds(self, delivery: Delivery) -> bool:
        """Whether ``delivery``'s lease is current (nobody else was given the run since)."""
        return delivery.token in self._inflight

    def ack_now(self, delivery: Delivery, then: Run | None = None, at: datetime | None = None) -> bool:
        """``ack`` without a coroutine (for the backend's one-step moments)."""
        lease = self._inflight.pop(delivery.token, None)
        if lease is None:
            return False
        if self._handed_back:
            self._handed_back.pop(lease.run[RECORD_ID], None)
        self._compact_leases()
        if then is not None:
            self.enqueue_now(then, at)
        return True

    def _compact_leases(self) -> None:
        leases = self._leases
        if len(leases) > _LEASE_MIN_COMPACT and len(leases) > _LEASE_SLACK * len(self._inflight):
            inflight = self._inflight
            self._leases = deque(
                (until, token) for until, token in leases if token in inflight and inflight[token].until == until
            )

    async def drain(self) -> list[Run]:
        """Remove and return every queued run not handed to a worker: ready ones in delivery
        order, then delayed ones by deadline.

        For a scheduler that stops: nothing else would ever deliver these runs, so it can
        record them as cancelled. Runs in flight stay (their workers settle them), including
        one whose lease ended but that has not been handed out again: its worker may still ack.
        """
        drained = [record_run(run) for run, _ in self._ready]
        self._ready.clear()
        delayed = sorted(self._delayed)
        self._delayed = []
        drained.extend(record_run(run) for _, _, run in delayed)
        return drained

    async def depth(self) -> int:
        """Runs ready, delayed, and delivered but not yet acked."""
        return len(self._ready) + len(self._delayed) + len(self._inflight)

    async def queue_counts(self) -> dict[str, int]:
        """Runs ready, delayed, leased (delivered, not yet acked) and dead-lettered (as kept)."""
        return {
            "ready": len(self._ready),
            "delayed": len(self._delayed),
            "leased": len(self._inflight),
            "dead": len(self._dead),
        }
