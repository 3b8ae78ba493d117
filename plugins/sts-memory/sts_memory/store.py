"""``MemoryStore``: tasks, next fire times, run history and dependency progress in dictionaries.

Costs (n tasks, k due fires): ``next_due_time`` O(1) amortised, ``due_fires`` O(k log n),
``claim_fire`` O(log n), ``record_run`` O(1) amortised including retention. Nothing here
scans all tasks or all runs on the scheduler's or the worker's path.

The run history costs the garbage collector nothing per run kept: a record is a tuple of plain
values (``copying.run_record``), which the collector untracks the first time it sees it, and
every structure that holds something per run is a dict of such tuples, strings or numbers,
which the collector does not track either, or a per-task ``array`` of numbers, whose items it
does not visit. So a full collection does not walk the history. Records the collector has not
looked at yet wait in a small dict (``_fresh``) and move over in batches.
"""

from __future__ import annotations

import gc
import heapq
import itertools
from array import array
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sts.plugin import DueFire, Run, RunState, Task, TaskExistsError
from sts_memory.copying import RECORD_STATE, RECORD_TASK_NAME, record_run, run_record

# The due heap is rebuilt from the live entries when stale entries outnumber them this much.
_HEAP_SLACK = 2
_HEAP_MIN_REBUILD = 1024
# Fresh records are moved into the history once this many wait (and twice as many as stayed
# behind last time: records with a list or dict result stay tracked, so they never move).
_SETTLE_MIN = 1024
# A run-order array drops its used-up front once it is this long and more than half of it.
_COMPACT_MIN = 64


class MemoryStore:
    """A ``sts_core.interfaces.Store`` kept in this process's memory.

    ``max_runs_per_task`` (None: unlimited) and ``max_age`` (seconds, None: unlimited) bound
    the run history. A run's age counts from when this store first recorded it, by ``clock``.
    """

    #: Private to this process.
    shared = False

    def __init__(self, clock: Any, *, max_runs_per_task: int | None = 1000, max_age: float | None = None) -> None:
        self._clock = clock
        self._max_runs = max_runs_per_task
        self._max_age = None if max_age is None else timedelta(seconds=max_age)
        # tasks: the current version of every stored name, and the older versions of names
        # that have any, oldest first; versions keep rising across delete and re-add so
        # (name, version) never means two definitions.
        self._versions: dict[str, Task] = {}
        self._older: dict[str, list[Task]] = {}
        self._last_version: dict[str, int] = {}
        # schedule: the authoritative next fire per task as its heap entry (when, name); heap
        # entries that are not (by identity) a task's entry here any more are stale and dropped
        # when met. Fires due at the same time come out by name, as from a Redis sorted set.
        self._next: dict[str, tuple[datetime, str]] = {}
        self._heap: list[tuple[datetime, str]] = []
        # runs: every run gets a number (seq) in first-recorded order. _runs holds each run's
        # record by id, in that order (so reversed() is newest first), or None while the record
        # is in _fresh: only untracked values ever go into _runs, so the GC never tracks it.
        self._runs: dict[str, tuple[Any, ...] | None] = {}
        self._fresh: dict[str, tuple[Any, ...]] = {}
        self._settle_at = _SETTLE_MIN
        self._ids: dict[int, str] = {}  # seq -> run id, for the runs still kept
        self._seqs = itertools.count()
        # per task: the seqs of its runs, oldest first, from _task_head[name] on
        self._task_seqs: dict[str, array[int]] = {}
        self._task_head: dict[str, int] = {}
        # max_age: when each kept run was first recorded (timestamp) by seq; seqs before
        # _oldest are gone. First-recorded times rise with seq.
        self._recorded_at: dict[int, float] = {}
        self._oldest = 0
        # dependencies: child -> parents that succeeded since the child's last reset.
        self._parents: dict[str, set[str]] = {}
        # child -> the parent run that last completed its parents (a repeated call answers the same)
        self._completed_by: dict[str, str] = {}
        # fires queued or running per task (max_instances)
        # task -> its active fire's id, or a set of them when several (most tasks have one at most:
        # no set to allocate, and for the garbage collector to follow, per fire)
        self._active: dict[str, str | set[str]] = {}

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release; the data stays until the object is dropped."""

    # -- tasks --------------------------------------------------------------------------------

    async def put_task(self, task: Task, *, replace: bool = False) -> Task:
        """Store ``task`` as the next version of its name; ``TaskExistsError`` unless ``replace``."""
        self._refuse_existing([task], replace)
        return self._store_version(task)

    async def put_tasks(self, tasks: Sequence[Task], *, replace: bool = False) -> list[Task]:
        """Store several tasks, all or nothing: every check runs before anything is stored."""
        self._refuse_existing(tasks, replace)
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            duplicate = next(name for name in names if names.count(name) > 1)
            raise ValueError(f"task {duplicate!r} appears more than once in one put_tasks call")
        return [self._store_version(task) for task in tasks]

    def _refuse_existing(self, tasks: Sequence[Task], replace: bool) -> None:
        if replace:
            return
        for task in tasks:
            if task.name in self._versions:
                raise TaskExistsError(
                    f"a task named {task.name!r} already exists; pass replace=True to store a new version"
                )

    def _store_version(self, task: Task) -> Task:
        version = self._last_version.get(task.name, 0) + 1
        stored = task.with_version(version)
        self._last_version[task.name] = version
        current = self._versions.get(task.name)
        if current is not None:
            self._older.setdefault(task.name, []).append(current)
        self._versions[task.name] = stored
        return stored

    async def get_task(self, name: str, version: int | None = None) -> Task | None:
        """The current task (or the given version of it); None when unknown or deleted."""
        current = self._versions.get(name)
        if current is None or version is None or current.version == version:
            return current
        for task in reversed(self._older.get(name, ())):
            if task.version == version:
                return task
        return None

    async def get_tasks(self, names: Sequence[str]) -> dict[str, Task]:
        """The current version of each task of ``names`` that is stored, by name."""
        versions = self._versions
        return {name: versions[name] for name in names if name in versions}

    async def list_tasks(self) -> list[Task]:
        """The current version of every task, sorted by name."""
        return [self._versions[name] for name in sorted(self._versions)]

    async def delete_task(self, name: str) -> bool:
        """Remove the task's versions, next fire and dependency progress; its runs stay."""
        existed = self._versions.pop(name, None) is not None
        self._older.pop(name, None)
        self._next.pop(name, None)
        self._parents.pop(name, None)
        self._completed_by.pop(name, None)
        self._active.pop(name, None)
        return existed

    # -- schedule -----------------------------------------------------------------------------

    async def set_next_fire(self, name: str, when: datetime | None) -> None:
        """Set (or with None clear) the task's next fire time."""
        self._set_next(name, when)

    def _set_next(self, name: str, when: datetime | None) -> None:
        if when is None:
            self._next.pop(name, None)
            return
        if when.tzinfo is None:
            # A naive time would break heap comparisons long after this call; refuse it here.
            raise ValueError(f"next fire of task {name!r}: expected a timezone-aware datetime, got {when!r}")
        entry = self._next[name] = (when, name)  # one tuple for both
        heapq.heappush(self._heap, entry)
        if len(self._heap) > _HEAP_MIN_REBUILD and len(self._heap) > _HEAP_SLACK * len(self._next):
            self._heap = list(self._next.values())
            heapq.heapify(self._heap)

    async def get_next_fire(self, name: str) -> datetime | None:
        """The task's next fire time, or None."""
        entry = self._next.get(name)
        return None if entry is None else entry[0]

    def _drop_stale_top(self) -> None:
        heap, live = self._heap, self._next
        while heap:
            top = heap[0]
            if live.get(top[1]) is top:
                return
            heapq.heappop(heap)

    async def next_due_time(self) -> datetime | None:
        """The earliest next fire over all tasks: the top of the heap."""
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    async def due_fires(self, now: datetime, limit: int) -> list[DueFire]:
        """Up to ``limit`` fires due at or before ``now``, earliest first; they stay due until claimed."""
        heap, live = self._heap, self._next
        taken: list[tuple[datetime, str]] = []
        while heap and len(taken) < limit:
            top = heap[0]
            if live.get(top[1]) is not top:
                heapq.heappop(heap)
                continue
            if top[0] > now:
                break
            taken.append(heapq.heappop(heap))
        for item in taken:
            heapq.heappush(heap, item)
        return [DueFire(name, when) for when, name in taken]

    async def claim_fire(self, fire: DueFire, next_fire: datetime | None) -> bool:
        """Compare and set: move the task's next fire from ``fire.scheduled_for`` to ``next_fire``."""
        return self.claim_now(fire, next_fire)

    def claim_now(self, fire: DueFire, next_fire: datetime | None) -> bool:
        """``claim_fire`` without a coroutine (for the backend's one-step moments)."""
        entry = self._next.get(fire.task_name)
        if entry is None or entry[0] != fire.scheduled_for:
            return False
        self._set_next(fire.task_name, next_fire)
        return True

    # -- runs ---------------------------------------------------------------------------------

    async def start_run(self, run: Run) -> Run | None:
        """Record ``run`` unless its id is recorded already; then return that record instead."""
        existing = self._record_of(run.id)
        if existing is not None:
            return record_run(existing)
        self.record_now(run)
        return None

    async def record_run(self, run: Run) -> None:
        """Insert or update a copy of ``run``; a new run may push the task's oldest out of history."""
        self.record_now(run)

    def record_now(self, run: Run) -> None:
        """``record_run`` without a coroutine (for the backend's one-step moments)."""
        runs, run_id = self._runs, run.id
        self._fresh[run_id] = run_record(run)
        known = run_id in runs
        runs[run_id] = None  # its record is the fresh one now
        if not known:
            self._add_to_history(run_id, run.task_name)
        if len(self._fresh) >= self._settle_at:
            self._settle()

    def _add_to_history(self, run_id: str, task_name: str) -> None:
        seq = next(self._seqs)
        self._ids[seq] = run_id
        seqs = self._task_seqs.get(task_name)
        if seqs is None:
            seqs = self._task_seqs[task_name] = array("q")
            self._task_head[task_name] = 0
        seqs.append(seq)
        if self._max_runs is not None and len(seqs) - self._task_head[task_name] > self._max_runs:
            self._drop_oldest(task_name)
        if self._max_age is not None:
            self._apply_max_age(seq)

    def _settle(self) -> None:
        """Move the fresh records the GC no longer tracks into ``_runs``."""
        fresh, runs = self._fresh, self._runs
        for run_id in [run_id for run_id, record in fresh.items() if not gc.is_tracked(record)]:
            runs[run_id] = fresh.pop(run_id)
        self._settle_at = max(_SETTLE_MIN, 2 * len(fresh))

    def _record_of(self, run_id: str) -> tuple[Any, ...] | None:
        record = self._runs.get(run_id)
        return self._fresh.get(run_id) if record is None else record

    def _drop_oldest(self, task_name: str) -> None:
        """Remove the oldest run ``task_name`` still holds from the history."""
        seqs, head = self._task_seqs[task_name], self._task_head[task_name]
        seq = seqs[head]
        run_id = self._ids.pop(seq)
        self._recorded_at.pop(seq, None)
        del self._runs[run_id]
        self._fresh.pop(run_id, None)
        head += 1
        if head == len(seqs):
            del self._task_seqs[task_name], self._task_head[task_name]
            return
        if head >= _COMPACT_MIN and 2 * head > len(seqs):
            del seqs[:head]
            head = 0
        self._task_head[task_name] = head

    def _apply_max_age(self, new_seq: int) -> None:
        now = self._clock.now().timestamp()
        recorded_at, ids = self._recorded_at, self._ids
        recorded_at[new_seq] = now
        cutoff = now - self._max_age.total_seconds()
        oldest = self._oldest
        while oldest < new_seq:
            when = recorded_at.get(oldest)
            if when is not None:  # else count retention dropped it already
                if when >= cutoff:
                    break
                # First-recorded order is the same for the task, so the expired run is the
                # oldest its task still holds.
                self._drop_oldest(self._record_of(ids[oldest])[RECORD_TASK_NAME])
            oldest += 1
        self._oldest = oldest

    async def get_run(self, run_id: str) -> Run | None:
        """A copy of the run record, or None (unknown or dropped by retention)."""
        record = self._record_of(run_id)
        return None if record is None else record_run(record)

    async def list_runs(
        self,
        task_name: str | None = None,
        states: Iterable[RunState] | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Copies of up to ``limit`` runs, newest (most recently first recorded) first."""
        wanted = None if states is None else frozenset(RunState(state).value for state in states)
        found: list[Run] = []
        if limit <= 0:
            return found
        fresh = self._fresh
        if task_name is None:
            candidates: Iterable[tuple[Any, ...]] = (
                fresh[run_id] if record is None else record for run_id, record in reversed(self._runs.items())
            )
        else:
            seqs = self._task_seqs.get(task_name, array("q"))
            head, ids = self._task_head.get(task_name, 0), self._ids
            candidates = (self._record_of(ids[seqs[i]]) for i in range(len(seqs) - 1, head - 1, -1))
        for record in candidates:
            if wanted is None or record[RECORD_STATE] in wanted:
                found.append(record_run(record))
                if len(found) >= limit:
                    break
        return found

    # -- dependencies -------------------------------------------------------------------------

    async def parent_succeeded(self, child: str, parent: str, required: frozenset[str], token: str) -> bool:
        """Note ``parent``'s success for ``child``; True (and reset) once every ``required`` parent succeeded."""
        if self._completed_by.get(child) == token:
            return True
        done = self._parents.get(child)
        if done is None:
            done = self._parents[child] = set()
        done.add(parent)
        if required <= done:
            del self._parents[child]
            self._completed_by[child] = token
            return True
        return False

    async def reset_parents(self, child: str) -> None:
        """Forget the child's parent progress."""
        self._parents.pop(child, None)

    # -- fires in flight ----------------------------------------------------------------------

    async def begin_fire(self, name: str, fire_id: str, limit: int) -> bool:
        """Count ``fire_id`` as active unless ``limit`` fires of ``name`` already are.

        Nothing here outlives the process, so entries need no expiry.
        """
        return self.begin_fire_now(name, fire_id, limit)

    def begin_fire_now(self, name: str, fire_id: str, limit: int) -> bool:
        """``begin_fire`` without a coroutine (for the backend's one-step moments)."""
        active = self._active.get(name)
        if active is None:
            if limit < 1:
                return False
            self._active[name] = fire_id
            return True
        if isinstance(active, str):
            if active == fire_id:
                return True
            if limit <= 1:
                return False
            active = self._active[name] = {active}
        if fire_id in active:
            return True
        if len(active) >= limit:
            return False
        active.add(fire_id)
        return True

    async def touch_fire(self, name: str, fire_id: str) -> None:
        """Nothing expires here."""

    async def end_fire(self, name: str, fire_id: str) -> None:
        """``fire_id`` no longer counts."""
        self.end_fire_now(name, fire_id)

    def end_fire_now(self, name: str, fire_id: str) -> None:
        """``end_fire`` without a coroutine (for the backend's one-step moments)."""
        active = self._active.get(name)
        if active is None:
            return
        if isinstance(active, str):
            if active == fire_id:
                del self._active[name]
            return
        active.discard(fire_id)
        if not active:
            del self._active[name]

    def current_version(self, name: str) -> int | None:
        """The version of ``name`` stored now, None if it is not stored."""
        current = self._versions.get(name)
        return None if current is None else current.version

    async def last_version(self, name: str) -> int:
        """The highest version ever stored under ``name``, 0 if never."""
        return self._last_version.get(name, 0)
