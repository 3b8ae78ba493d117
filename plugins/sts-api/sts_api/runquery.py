"""``GET /runs``: filters (task, states, time range) and pagination over the run history.

The kernel's ``runs(name, state, limit)`` answers the newest runs of a task and states; the
time range and the offset are applied here. Runs come newest first (by when they were first
recorded), so a time filter cannot stop early: the history is read in growing slices, at most
``SCAN_LIMIT`` runs per request. History is bounded anyway (``history.max_runs_per_task``,
``history.max_age``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from sts.plugin import Problem, Run, RunState, did_you_mean
from sts_api.responses import invalid

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_OFFSET = 100_000
#: The most run records one request reads from the store.
SCAN_LIMIT = 200_000
_FIRST_SLICE = 200
QUERY_KEYS = ("task", "state", "since", "until", "limit", "offset")


@attrs.frozen
class RunQuery:
    """Which runs a client asked for: ``since`` (inclusive) and ``until`` (exclusive) compare
    with each run's ``scheduled_for``."""

    task: str | None = None
    states: tuple[RunState, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def parse(cls, params: Mapping[str, Sequence[str]]) -> RunQuery:
        """From query parameters (each name to its values); raises a 422 ``ApiError`` listing
        every bad parameter as ``query.<name>``."""
        problems: list[Problem] = []
        for key in params:
            if key not in QUERY_KEYS:
                problems.append(Problem(f"query.{key}", f"unknown parameter{did_you_mean(key, QUERY_KEYS)}; "
                                                        f"expected {', '.join(QUERY_KEYS)}"))
        for key, values in params.items():
            if key in QUERY_KEYS and key != "state" and len(values) > 1:
                problems.append(Problem(f"query.{key}", "given more than once; expected one value"))
        values: dict[str, Any] = {}
        task = _one(params, "task")
        if task is not None:
            values["task"] = task
        states = []
        for text in params.get("state", ()):
            try:
                states.append(RunState(text))
            except ValueError:
                allowed = ", ".join(state.value for state in RunState)
                problems.append(Problem("query.state", f"expected one of {allowed}, got {text!r}"))
        values["states"] = tuple(dict.fromkeys(states))
        for key in ("since", "until"):
            text = _one(params, key)
            if text is not None:
                try:
                    values[key] = _datetime(text)
                except ValueError:
                    problems.append(Problem(f"query.{key}", f"expected an ISO 8601 date-time such as "
                                                            f"2026-11-27T07:00:00Z, got {text!r}"))
        for key, low, high in (("limit", 1, MAX_LIMIT), ("offset", 0, MAX_OFFSET)):
            text = _one(params, key)
            if text is None:
                continue
            if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
                problems.append(Problem(f"query.{key}", f"expected a whole number from {low} to {high}, got {text!r}"))
            else:
                values[key] = int(text)
        if problems:
            raise invalid(problems, "invalid query parameters")
        return cls(**values)

    def in_range(self, run: Run) -> bool:
        """True when the run's ``scheduled_for`` lies in [since, until)."""
        when = run.scheduled_for
        return (self.since is None or when >= self.since) and (self.until is None or when < self.until)


@attrs.frozen
class RunPage:
    """One page of runs, and the offset of the next page (None: this is the last)."""

    runs: list[Run]
    next_offset: int | None


async def find_runs(scheduler: Any, query: RunQuery) -> RunPage:
    """The page of runs ``query`` asks for, newest first."""
    wanted = query.offset + query.limit + 1  # one more tells whether a next page exists
    filtered = query.since is not None or query.until is not None
    size = max(wanted, _FIRST_SLICE) if filtered else wanted
    while True:
        runs = await scheduler.runs(query.task, list(query.states) or None, limit=size)
        matching = [run for run in runs if query.in_range(run)] if filtered else runs
        if len(matching) >= wanted or len(runs) < size or size >= SCAN_LIMIT:
            break
        size = min(size * 4, SCAN_LIMIT)
    page = matching[query.offset : query.offset + query.limit]
    more = len(matching) > query.offset + query.limit
    return RunPage(page, query.offset + query.limit if more else None)


def _one(params: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = params.get(key)
    return values[-1] if values else None


def _datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
