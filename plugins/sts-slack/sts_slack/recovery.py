"""Which tasks are failing, as seen by this process, so a success can say "recovered".

A *failure episode* of a task starts with a run that failed for good and ends with the next
run that succeeds. The episode is *announced* when at least one of its failures was sent to
Slack (not throttled, not switched off); only an announced episode ends with a "recovered"
message, so a flapping task does not post a recovery for every failure Slack never heard of
(those are counted in the throttle's summary instead).

In-process only: with several workers, a recovery is posted only when the process that saw
the failure also runs the succeeding attempt (see the README).
"""

from __future__ import annotations

import threading
from datetime import datetime

import attrs


@attrs.frozen
class Episode:
    """A task's failures since its last success."""

    task: str
    since: datetime
    failures: int
    last_error: str | None
    announced: bool


class RecoveryTracker:
    """Failure episodes by task name. Thread-safe."""

    def __init__(self) -> None:
        self._episodes: dict[str, Episode] = {}
        self._last_success: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def failed(self, task: str, time: datetime, error: str | None, *, announced: bool) -> None:
        """A run of ``task`` failed for good at ``time``; ``announced``: an alert was sent."""
        with self._lock:
            episode = self._episodes.get(task)
            if episode is None:
                episode = Episode(task, time, 0, None, False)
            self._episodes[task] = Episode(
                task, episode.since, episode.failures + 1, error or episode.last_error, episode.announced or announced
            )

    def succeeded(self, task: str, time: datetime) -> Episode | None:
        """A run of ``task`` succeeded: the episode it ends, if any."""
        with self._lock:
            self._last_success[task] = time
            return self._episodes.pop(task, None)

    def last_success(self, task: str) -> datetime | None:
        """When this process last saw ``task`` succeed."""
        with self._lock:
            return self._last_success.get(task)

    def forget(self, task: str) -> None:
        """``task`` was removed: nothing to recover from any more."""
        with self._lock:
            self._episodes.pop(task, None)
            self._last_success.pop(task, None)
