"""Waiting out a backend that is away: a step retried until it is back, a loop backing off, and
each loop's last beat (for ``health()``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from sts_core.clock import Clock
from sts_core.errors import BackendUnavailableError

log = logging.getLogger("sts.engine")
T = TypeVar("T")

#: How long a loop waits after an unexpected error before retrying.
LOOP_RETRY_DELAY = 1.0
#: While the backend is unreachable, loops retry after a delay doubling up to this (seconds),
#: or sooner when the backend says it is back (a shared store's watch resyncs and wakes them).
MAX_BACKOFF = 5.0


class BackendOutages:
    """How the engine's loops and steps live through a backend that is away.

    Owns each loop's last beat (``beats``: loop name -> when it last finished a step), the
    backoff of each loop while the backend is unreachable, and the waits in progress, which
    ``retry_now`` ends early when the backend says it is back. Given only the clock.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.beats: dict[str, datetime] = {}
        self._unavailable: dict[str, float] = {}  # loop name -> current backoff, while the backend is away
        self._backing_off: set[asyncio.Event] = set()

    @property
    def backend_unavailable(self) -> bool:
        """True while some loop is backing off from an unreachable backend."""
        return bool(self._unavailable)

    async def retrying(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
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

    async def back_off(self, loop: str, exc: Exception) -> None:
        """Wait before ``loop`` tries again after ``exc``: an unreachable backend gets one log line
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

    def loop_alive(self, loop: str) -> None:
        """``loop`` finished a step: note when (for ``health()``), and say so if the backend had been away."""
        self.beats[loop] = self.clock.now()
        if self._unavailable and self._unavailable.pop(loop, None) is not None:
            log.warning("%s loop: the backend is reachable again", loop)

    def retry_now(self) -> None:
        """The backend is back (a store resynced, a broker reconnected), or the engine stops:
        steps and loops waiting out an outage try again at once rather than at the end of their backoff."""
        for retry_now in self._backing_off:
            retry_now.set()

    async def _wait_for_backend(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less if ``retry_now`` is called meanwhile."""
        retry_now = asyncio.Event()
        self._backing_off.add(retry_now)
        try:
            await self.clock.wait(retry_now, delay)
        finally:
            self._backing_off.discard(retry_now)


def take_step(what: str, step: Callable[[], Awaitable[T]]) -> Awaitable[T]:
    """``BackendOutages.retrying`` for a backend in this process (nothing to wait out): the step
    itself, without a retrying coroutine around it (the hot path's cost)."""
    return step()
