"""When the next attempt of a failed run starts."""

from __future__ import annotations

import random

import attrs


@attrs.frozen(slots=True)
class RetryPolicy:
    """How often and how soon a failed run is tried again.

    Attempt ``n`` (the first retry is attempt 2) waits
    ``min(delay * backoff ** (n - 2), max_delay) + uniform(0, jitter)`` seconds after attempt
    ``n - 1`` ended. ``retries`` counts the attempts after the first.
    """

    retries: int = 0
    delay: float = 1.0
    backoff: float = 1.0
    max_delay: float = 300.0
    jitter: float = 0.0

    def should_retry(self, attempt: int) -> bool:
        """True when the attempt that just failed (1-based) may be followed by another."""
        return attempt <= self.retries

    def delay_after(self, attempt: int, rand: random.Random | None = None) -> float:
        """Seconds to wait before the attempt that follows the failed ``attempt`` (1-based)."""
        try:
            base = self.delay * self.backoff ** (attempt - 1)
        except OverflowError:  # a huge backoff or many retries: the cap applies (no delay stays none)
            base = self.max_delay if self.delay > 0 else 0.0
        wait = min(base, self.max_delay)
        if self.jitter > 0:
            wait += (rand or random).uniform(0.0, self.jitter)
        return wait
