"""Time, from one injectable source.

Wall time (``now``) only computes fire times; waiting uses the monotonic clock, so a jump of
the system clock neither fires a burst of runs nor stalls a sleep. Tests pass a ``FakeClock``
(see ``sts_core.testing``) and move time by hand instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the engine needs to know about time."""

    def now(self) -> datetime:
        """Current wall time, timezone-aware, in UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""

    async def wait(self, event: asyncio.Event | None, timeout: float | None) -> bool:
        """Wait until ``event`` is set (return True) or ``timeout`` seconds pass (False)."""


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def wait(self, event: asyncio.Event | None, timeout: float | None) -> bool:
        if event is None:
            await asyncio.sleep(max(timeout or 0.0, 0.0))
            return False
        if event.is_set():
            return True
        if timeout is not None and timeout <= 0:
            return False
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the wait in a Task of its own, which
            # the scheduler and worker loops would pay on every pass.
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return False
        return True


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
