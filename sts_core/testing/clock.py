"""``FakeClock``: a ``sts_core.clock.Clock`` whose time moves only when a test moves it.

Part of ``sts_core.testing``; import it from there. Standard library only.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

#: Where a ``FakeClock`` starts unless told otherwise.
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
# Deadlines this close to the current fake time count as reached (float rounding).
_TOLERANCE = 1e-9
# How long (real seconds) the suites wait for a coroutine they expect to finish.
_REAL_TIMEOUT = 5.0


class FakeClock:
    """A ``sts_core.clock.Clock`` whose time moves only when the test calls ``advance`` or ``jump``.

    ``now()`` starts at ``start`` (aware; kept in UTC) and ``monotonic()`` at
    ``monotonic_start``. ``wait(event, timeout)`` never looks at real time: it returns True
    once ``event`` is set, and False once ``advance`` has moved monotonic time to or past
    its deadline. ``advance`` only marks waiters due; they run when the event loop next gets
    control, so follow it with ``await clock.settle()`` (or use ``advance_settled``).
    """

    def __init__(self, start: datetime = DEFAULT_START, *, monotonic_start: float = 1000.0) -> None:
        if start.tzinfo is None:
            raise ValueError(f"start: expected a timezone-aware datetime, got {start!r}")
        self._wall = start.astimezone(UTC)
        self._mono = float(monotonic_start)
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._sleepers = 0

    def now(self) -> datetime:
        """The fake wall time (aware, UTC)."""
        return self._wall

    def monotonic(self) -> float:
        """The fake monotonic time in seconds."""
        return self._mono

    @property
    def sleepers(self) -> int:
        """How many coroutines are inside ``wait`` right now."""
        return self._sleepers

    def next_deadline(self) -> float | None:
        """The earliest monotonic deadline of a pending ``wait``, or None."""
        timers = self._timers
        while timers and timers[0][2].done():
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    async def wait(self, event: asyncio.Event | None, timeout: float | None) -> bool:
        """Wait until ``event`` is set (True) or the fake clock passes ``timeout`` (False).

        ``timeout`` None waits for the event only; ``event`` None waits for the time only.
        When both happen before the waiter runs again, the event wins (True). A timeout
        of zero or less yields to the event loop once, then answers.
        """
        if event is not None and event.is_set():
            return True
        if timeout is not None and timeout <= 0:
            # Yield once, so a caller stuck re-waiting with no time left cannot starve the
            # loop (and the test's own real-time guards).
            await asyncio.sleep(0)
            return event is not None and event.is_set()
        loop = asyncio.get_running_loop()
        timer: asyncio.Future[None] = loop.create_future()
        if timeout is not None:
            heapq.heappush(self._timers, (self._mono + timeout, next(self._seq), timer))
        event_wait: asyncio.Task[Any] | None = None
        self._sleepers += 1
        try:
            if event is None:
                await timer
                return False
            event_wait = loop.create_task(event.wait())
            await asyncio.wait((timer, event_wait), return_when=asyncio.FIRST_COMPLETED)
            return event.is_set()
        finally:
            self._sleepers -= 1
            if not timer.done():
                timer.cancel()
            if event_wait is not None and not event_wait.done():
                event_wait.cancel()

    def advance(self, seconds: float) -> None:
        """Move wall and monotonic time forward by ``seconds`` and mark due waiters to wake.

        Time moves in one step: a waiter woken here sees the final time. To let a loop
        that sleeps repeatedly act at each of its deadlines, use ``advance_settled``.
        """
        if seconds < 0:
            raise ValueError(f"seconds: expected zero or more (use jump() to move wall time back), got {seconds!r}")
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)
        self._wake_due()

    def jump(self, seconds: float) -> None:
        """Move only wall time by ``seconds`` (either way), as a system clock change does.

        Monotonic time and so every pending ``wait`` are unaffected.
        """
        self._wall += timedelta(seconds=seconds)

    async def advance_settled(self, seconds: float, *, max_steps: int = 100_000) -> None:
        """Advance by ``seconds`` one waiter deadline at a time, settling after each step.

        Each woken coroutine runs (as ``settle`` guarantees) at the time it asked to wake,
        before time moves on, as it would with a real clock. Raises ``RuntimeError`` after
        ``max_steps`` deadlines (a coroutine waiting in a tight loop).
        """
        target = self._mono + seconds
        for _ in range(max_steps):
            await self.settle()
            deadline = self.next_deadline()
            if deadline is None or deadline > target + _TOLERANCE:
                self.advance(max(target - self._mono, 0.0))
                await self.settle()
                return
            self.advance(max(deadline - self._mono, 0.0))
        raise RuntimeError(f"advance_settled({seconds}) met more than {max_steps} deadlines; is something spinning?")

    def _wake_due(self) -> None:
        timers = self._timers
        limit = self._mono + _TOLERANCE
        while timers and timers[0][0] <= limit:
            _, _, timer = heapq.heappop(timers)
            if not timer.done():
                timer.set_result(None)

    @staticmethod
    async def settle(rounds: int = 100) -> None:
        """Yield to the event loop until nothing is ready to run, at most ``rounds`` times.

        Guarantees, when it returns before ``rounds`` yields: every callback and coroutine
        step that was ready, and every one those made ready in turn, has run; so each
        coroutine has reached an await on something not yet done (a future, a FakeClock
        timer, I/O, a thread, a real-time sleep). It does not wait for I/O, threads, or
        real time. With an event loop that hides its ready queue, it yields exactly
        ``rounds`` times.
        """
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)  # CPython's queue of runnable callbacks
        for _ in range(rounds):
            await asyncio.sleep(0)
            if ready is not None and not ready:
                return

    async def until_waiting(self, count: int = 1, *, timeout: float = _REAL_TIMEOUT) -> None:
        """Return once at least ``count`` coroutines are inside ``wait``.

        Raises ``TimeoutError`` after ``timeout`` real seconds: a test's guard against a
        coroutine that never goes to sleep (or talks to a server that never answers).
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        spins = 0
        while self._sleepers < count:
            if loop.time() > give_up:
                raise TimeoutError(f"expected {count} coroutine(s) waiting on the clock, found {self._sleepers}")
            spins += 1
            await asyncio.sleep(0 if spins < 100 else 0.001)
