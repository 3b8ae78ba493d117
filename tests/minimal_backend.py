"""A backend written from the documented Protocols alone (``sts_core.interfaces.Store`` and
``Broker``): only their mandatory members, none of the optional capabilities (no ``AtomicSteps``,
no outbox, no ``start_run``, ``get_tasks``, ``consume_many`` or ``drain``). The engine then takes
every step one by one (``sts_core.steps``): these tests prove that path.

It is written as a third party would write it: it imports the kernel only from ``sts.plugin``,
and registers itself as an object with a ``register_backends`` hook implementation, handed to
the plugin manager. Simple rather than fast: most operations scan.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from sts.plugin import Delivery, DueFire, Run, RunState, Task, TaskExistsError, hookimpl, parse_duration

#: How long an active fire counts toward max_instances unless its worker's heartbeat renews it.
FIRE_TTL = timedelta(hours=1)


class DictStore:
    """A ``Store`` in dictionaries."""

    shared = False

    def __init__(self, clock: Any, *, max_runs_per_task: int | None = None, max_age: float | None = None) -> None:
        self.clock = clock
        self.max_runs = max_runs_per_task
        self.max_age = max_age
        self.versions: dict[str, list[Task]] = {}
        self.last_versions: dict[str, int] = {}
        self.next_fires: dict[str, datetime] = {}
        self.runs: dict[str, tuple[int, datetime, dict[str, Any]]] = {}  # id -> (order, first recorded, data)
        self.order = itertools.count()
        self.progress: dict[str, set[str]] = {}
        self.completed_by: dict[str, str] = {}
        self.active: dict[str, dict[str, datetime]] = {}

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put_task(self, task: Task, *, replace: bool = False) -> Task:
        return (await self.put_tasks([task], replace=replace))[0]

    async def put_tasks(self, tasks: Sequence[Task], *, replace: bool = False) -> list[Task]:
        if not replace:
            for task in tasks:
                if task.name in self.versions:
                    raise TaskExistsError(f"a task named {task.name!r} already exists")
        stored = []
        for task in tasks:
            version = self.last_versions.get(task.name, 0) + 1
            self.last_versions[task.name] = version
            stored.append(task.with_version(version))
            self.versions.setdefault(task.name, []).append(stored[-1])
        return stored

    async def get_task(self, name: str, version: int | None = None) -> Task | None:
        versions = self.versions.get(name, [])
        if version is None:
            return versions[-1] if versions else None
        return next((task for task in versions if task.version == version), None)

    async def list_tasks(self) -> list[Task]:
        return [versions[-1] for versions in self.versions.values()]

    async def delete_task(self, name: str) -> bool:
        for table in (self.next_fires, self.progress, self.completed_by, self.active):
            table.pop(name, None)
        return self.versions.pop(name, None) is not None

    async def set_next_fire(self, name: str, when: datetime | None) -> None:
        if when is None:
            self.next_fires.pop(name, None)
        else:
            self.next_fires[name] = when

    async def get_next_fire(self, name: str) -> datetime | None:
        return self.next_fires.get(name)

    async def next_due_time(self) -> datetime | None:
        return min(self.next_fires.values(), default=None)

    async def due_fires(self, now: datetime, limit: int) -> list[DueFire]:
        due = sorted((when, name) for name, when in self.next_fires.items() if when <= now)
        return [DueFire(name, when) for when, name in due[:limit]]

    async def claim_fire(self, fire: DueFire, next_fire: datetime | None) -> bool:
        if self.next_fires.get(fire.task_name) != fire.scheduled_for:
            return False
        await self.set_next_fire(fire.task_name, next_fire)
        return True

    async def record_run(self, run: Run) -> None:
        known = self.runs.get(run.id)
        if known is not None:
            self.runs[run.id] = (known[0], known[1], run.to_dict())
            return
        self.runs[run.id] = (next(self.order), self.clock.now(), run.to_dict())
        self._apply_retention(run.task_name)

    def _apply_retention(self, task_name: str) -> None:
        if self.max_age is not None:
            cutoff = self.clock.now() - timedelta(seconds=self.max_age)
            for run_id in [run_id for run_id, (_, first, _) in self.runs.items() if first < cutoff]:
                del self.runs[run_id]
        if self.max_runs is not None:
            of_task = sorted((order, run_id) for run_id, (order, _, data) in self.runs.items()
                             if data["task_name"] == task_name)
            for _, run_id in of_task[:-self.max_runs]:
                del self.runs[run_id]

    async def get_run(self, run_id: str) -> Run | None:
        known = self.runs.get(run_id)
        return None if known is None else Run.from_dict(known[2])

    async def list_runs(
        self, task_name: str | None = None, states: Iterable[RunState] | None = None, limit: int = 100
    ) -> list[Run]:
        wanted = None if states is None else {state.value for state in states}
        newest_first = sorted(self.runs.values(), key=lambda entry: entry[0], reverse=True)
        found = [Run.from_dict(data) for _, _, data in newest_first
                 if (task_name is None or data["task_name"] == task_name)
                 and (wanted is None or data["state"] in wanted)]
        return found[:limit]

    async def parent_succeeded(self, child: str, parent: str, required: frozenset[str], token: str) -> bool:
        if self.completed_by.get(child) == token:
            return True  # the step that completed the set, asked again
        done = self.progress.setdefault(child, set())
        done.add(parent)
        if not required <= done:
            return False
        self.progress.pop(child)
        self.completed_by[child] = token
        return True

    async def reset_parents(self, child: str) -> None:
        self.progress.pop(child, None)

    async def begin_fire(self, name: str, fire_id: str, limit: int) -> bool:
        now = self.clock.now()
        fires = self.active.setdefault(name, {})
        for expired in [fire for fire, until in fires.items() if until <= now]:
            del fires[expired]
        if fire_id not in fires and len(fires) >= limit:
            return False
        fires[fire_id] = now + FIRE_TTL
        return True

    async def touch_fire(self, name: str, fire_id: str) -> None:
        fires = self.active.get(name, {})
        if fire_id in fires:
            fires[fire_id] = self.clock.now() + FIRE_TTL

    async def end_fire(self, name: str, fire_id: str) -> None:
        self.active.get(name, {}).pop(fire_id, None)

    async def last_version(self, name: str) -> int:
        return self.last_versions.get(name, 0)


@attrs.define
class _Message:
    order: int
    data: dict[str, Any]
    at: datetime | None  # not delivered before
    token: int | None = None  # of the latest delivery, None when never delivered or handed back
    lease_until: float = 0.0
    count: int = 0
    handed_back: int = 0


class AsyncioBroker:
    """A ``Broker`` for consumers in this process; waiting goes through the clock."""

    durable = False
    may_duplicate = False
    counts_may_skip = False

    def __init__(self, clock: Any, *, lease_time: float = 30.0) -> None:
        self.clock = clock
        self.lease_time = lease_time
        self.messages: dict[int, _Message] = {}
        self.dead: list[dict[str, Any]] = []
        self.order = itertools.count(1)
        self.tokens = itertools.count(1)
        self.waiters: set[asyncio.Event] = set()

    async def open(self) -> None: ...

    async def close(self) -> None:
        self._wake_all()

    def _wake_all(self) -> None:
        for waiter in self.waiters:
            waiter.set()

    async def enqueue(self, run: Run, at: datetime | None = None) -> None:
        if at is not None and at.tzinfo is None:
            raise ValueError("at must be timezone-aware")
        order = next(self.order)
        self.messages[order] = _Message(order, run.to_dict(), at)
        self._wake_all()

    def _available(self, message: _Message, now: datetime, mono: float) -> bool:
        if message.token is not None and message.lease_until > mono:
            return False  # leased
        return message.at is None or message.at <= now

    def _take(self) -> Delivery | None:
        now, mono = self.clock.now(), self.clock.monotonic()
        ready = [m for m in self.messages.values() if self._available(m, now, mono)]
        if not ready:
            return None
        message = min(ready, key=lambda m: (m.at or datetime.min.replace(tzinfo=now.tzinfo), m.order))
        message.token = next(self.tokens)
        message.lease_until = mono + self.lease_time
        message.count += 1
        return Delivery(Run.from_dict(message.data), message.token, message.lease_until, message.count,
                        message.handed_back)

    def _next_change(self) -> float | None:
        """Seconds until a delayed run comes due or a lease ends (None: nothing pending)."""
        now, mono = self.clock.now(), self.clock.monotonic()
        times = [m.lease_until - mono if m.token is not None and m.lease_until > mono
                 else (m.at - now).total_seconds() for m in self.messages.values()
                 if (m.token is not None and m.lease_until > mono) or (m.at is not None and m.at > now)]
        return min(times, default=None)

    async def consume(self, timeout: float | None) -> Delivery | None:
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        while True:
            delivery = self._take()
            if delivery is not None:
                return delivery
            left = None if deadline is None else deadline - self.clock.monotonic()
            if left is not None and left <= 0:
                return None
            change = self._next_change()
            wait = change if left is None else (left if change is None else min(left, change))
            waiter = asyncio.Event()
            self.waiters.add(waiter)
            try:
                await self.clock.wait(waiter, wait)
            finally:
                self.waiters.discard(waiter)

    def _held(self, delivery: Delivery) -> _Message | None:
        return next((m for m in self.messages.values() if m.token == delivery.token), None)

    async def extend(self, delivery: Delivery) -> bool:
        message = self._held(delivery)
        if message is None:
            return False
        message.lease_until = delivery.lease_until = self.clock.monotonic() + self.lease_time
        return True

    async def ack(self, delivery: Delivery, then: Run | None = None, at: datetime | None = None) -> bool:
        message = self._held(delivery)
        if message is None:
            return False
        del self.messages[message.order]
        if then is not None:
            await self.enqueue(then, at)
        return True

    async def release(self, delivery: Delivery) -> bool:
        message = self._held(delivery)
        if message is None:
            return False
        message.token, message.at = None, None
        message.handed_back += 1
        self._wake_all()
        return True

    async def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        message = self._held(delivery)
        if message is None:
            return False
        del self.messages[message.order]
        self.dead.append({"id": message.data["id"], "reason": reason, "payload": message.data,
                          "at": self.clock.now().isoformat()})
        return True

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.dead[::-1][:limit]

    async def depth(self) -> int:
        return len(self.messages)


@attrs.define
class MinimalBackend:
    store: DictStore
    broker: AsyncioBroker


def build_backend(config: Any, clock: Any) -> MinimalBackend:
    """``factory(config, clock)`` for ``register_backends``."""
    max_age = config.get("history.max_age", None)
    return MinimalBackend(
        DictStore(clock, max_runs_per_task=config.get("history.max_runs_per_task", 1000),
                  max_age=None if max_age is None else parse_duration(max_age) or None),
        AsyncioBroker(clock, lease_time=float(config.get("minimal.lease_time", 30.0))),
    )


class MinimalPlugin:
    """The plugin a third party would install: it provides the ``minimal`` backend."""

    @hookimpl
    def register_backends(self, register: Any) -> None:
        register("minimal", build_backend)
