"""Test support shipped with the kernel, registered as a pytest plugin (``pytest11: sts``).

It gives every test suite, the kernel's and each plugin's:

- ``FakeClock`` and the ``fake_clock`` fixture: time that moves only when a test moves it;
- ``StubConfig``: the ``config.get("dotted.path", default)`` surface a backend factory reads;
- the ``make_plugin_manager`` fixture: a plugin manager holding only the plugins a test names;
- ``StoreContract`` and ``BrokerContract``: the conformance suites every backend runs.

A backend plugin runs the suites by subclassing them in one of its test modules and giving
one fixture, ``make_backend``, that builds a fresh, empty backend::

    # plugins/sts-redis/tests/test_redis_contract.py
    import pytest
    from sts_core.testing import BrokerContract, StoreContract, StubConfig
    from sts_redis.backend import build_backend

    @pytest.fixture
    def make_backend(redis_url):
        def make(clock, settings):
            # settings: "lease_time" (seconds), "max_runs_per_task" (int or None),
            # "max_age" (seconds or None); map them onto the plugin's own config keys.
            return build_backend(StubConfig({...}), clock)
        return make

    class TestRedisStore(StoreContract): ...
    class TestRedisBroker(BrokerContract): ...

The suites open and close the backend themselves and drive time only through the
``FakeClock`` they pass in, so a backend must take every time it uses from the clock and
do its waiting through ``clock.wait``. They compare tasks and runs by value (``to_dict``),
never by object identity, so a backend that serialises works unchanged. Each test builds
its own backend: ``make_backend`` must return one that shares no data with earlier ones.

This module imports only the standard library and pytest at import time (it loads in every
pytest session); kernel modules are imported where they are used.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sts_core.interfaces import Backend, Broker, Store
    from sts_core.model import Run, Task
    from sts_core.plugins import PluginManager

__all__ = [
    "DEFAULT_SETTINGS",
    "DEFAULT_START",
    "BrokerContract",
    "FakeClock",
    "StoreContract",
    "StubConfig",
    "fake_clock",
    "make_plugin_manager",
    "noop",
]

#: Where a ``FakeClock`` starts unless told otherwise.
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
# Deadlines this close to the current fake time count as reached (float rounding).
_TOLERANCE = 1e-9
# How long (real seconds) the suites wait for a coroutine they expect to finish.
_REAL_TIMEOUT = 5.0


# --- time --------------------------------------------------------------------------------------


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


@pytest.fixture
def fake_clock() -> FakeClock:
    """A ``FakeClock`` at 2026-01-01T00:00Z."""
    return FakeClock()


# --- config and plugins ----------------------------------------------------------------------


class StubConfig:
    """A stand-in for the kernel's config in plugin tests: nested mappings read by dotted path."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = data or {}

    def get(self, path: str, default: Any = None) -> Any:
        """The value at ``path`` (e.g. ``"history.max_age"``), or ``default`` when absent."""
        node: Any = self._data
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node


@pytest.fixture
def make_plugin_manager() -> Callable[..., PluginManager]:
    """``make_plugin_manager(("name", module_or_object), ...)``: a manager with only those plugins.

    Entry points are not scanned, so the result does not depend on what is installed.
    """
    from sts_core.plugins import PluginManager

    def make(*plugins: tuple[str, object], disable: tuple[str, ...] = ()) -> PluginManager:
        return PluginManager(disable, entry_points=False, plugins=plugins)

    return make


def noop() -> None:
    """A function for test tasks to refer to by import path (``sts_core.testing:noop``)."""


# --- conformance suites --------------------------------------------------------------------------

#: The settings ``make_backend`` receives unless a test overrides some of them.
DEFAULT_SETTINGS: dict[str, Any] = {"lease_time": 30.0, "max_runs_per_task": 1000, "max_age": None}


def _task(name: str, **options: Any) -> Task:
    from sts_core.model import Task

    if "parent_tasks" not in options:
        options.setdefault("every", 30)
    return Task(name, function="sts_core.testing:noop", **options)


def _run(task_name: str, scheduled_for: datetime, **fields: Any) -> Run:
    from sts_core.model import Run, fire_id, new_run_id

    fields.setdefault("id", new_run_id())
    fields.setdefault("task_version", 1)
    return Run(
        task_name=task_name,
        scheduled_for=scheduled_for,
        fire_id=fire_id(task_name, scheduled_for),
        created_at=scheduled_for,
        **fields,
    )


async def _finish(awaitable: Awaitable[Any]) -> Any:
    """Await something the test expects to complete promptly, with a real-time guard."""
    return await asyncio.wait_for(awaitable, _REAL_TIMEOUT)


class _BackendSuite:
    """Builds a backend per test from the ``make_backend`` fixture, opens it, runs, closes it."""

    def run_backend(
        self,
        make_backend: Callable[[FakeClock, dict[str, Any]], Backend],
        body: Callable[[Backend, FakeClock], Awaitable[Any]],
        **settings: Any,
    ) -> Any:
        clock = FakeClock()
        backend = make_backend(clock, {**DEFAULT_SETTINGS, **settings})

        async def main() -> Any:
            await backend.store.open()
            await backend.broker.open()
            try:
                return await body(backend, clock)
            finally:
                await backend.broker.close()
                await backend.store.close()

        return asyncio.run(main())


class StoreContract(_BackendSuite):
    """What every ``Store`` must do. Subclass as ``Test<Backend>Store`` and give ``make_backend``.

    Choices the interface leaves open and this suite fixes: version numbers keep rising
    when a name is deleted and added again; ``due_fires`` claims nothing; ``list_runs`` is
    newest first by when a run was first recorded; a run's age (``max_age``) counts from
    when the store first recorded it, by the clock; retention is applied on ``record_run``.
    """

    def run_store(self, make_backend: Any, body: Callable[[Store, FakeClock], Awaitable[Any]], **settings: Any) -> Any:
        async def with_store(backend: Backend, clock: FakeClock) -> Any:
            return await body(backend.store, clock)

        return self.run_backend(make_backend, with_store, **settings)

    # -- tasks --------------------------------------------------------------------------------

    def test_put_task_stores_version_1_and_get_task_returns_it(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            stored = await store.put_task(_task("report", description="daily"))
            assert stored.version == 1
            fetched = await store.get_task("report")
            assert fetched is not None
            assert fetched.to_dict() == stored.to_dict()

        self.run_store(make_backend, body)

    def test_replacing_a_task_stores_the_next_version_and_keeps_the_old_ones(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            await store.put_task(_task("report", every=30))
            second = await store.put_task(_task("report", every=60), replace=True)
            third = await store.put_task(_task("report", every=90), replace=True)
            assert (second.version, third.version) == (2, 3)
            current = await store.get_task("report")
            assert current is not None and (current.version, current.every) == (3, 90)
            old = await store.get_task("report", 1)
            assert old is not None and (old.version, old.every) == (1, 30)

        self.run_store(make_backend, body)

    def test_put_task_refuses_an_existing_name_without_replace(self, make_backend: Any) -> None:
        from sts_core.errors import TaskExistsError

        async def body(store: Store, clock: FakeClock) -> None:
            await store.put_task(_task("report", every=30))
            with pytest.raises(TaskExistsError, match="report"):
                await store.put_task(_task("report", every=60))
            current = await store.get_task("report")
            assert current is not None and (current.version, current.every) == (1, 30)

        self.run_store(make_backend, body)

    def test_put_tasks_stores_all_with_versions_in_order(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            await store.put_task(_task("b"))
            stored = await store.put_tasks([_task("a"), _task("b"), _task("c")], replace=True)
            assert [(t.name, t.version) for t in stored] == [("a", 1), ("b", 2), ("c", 1)]

        self.run_store(make_backend, body)

    def test_put_tasks_stores_nothing_when_one_name_exists(self, make_backend: Any) -> None:
        from sts_core.errors import TaskExistsError

        async def body(store: Store, clock: FakeClock) -> None:
            await store.put_task(_task("b"))
            with pytest.raises(TaskExistsError, match="'b'"):
                await store.put_tasks([_task("a"), _task("b", every=5), _task("c")])
            assert [t.name for t in await store.list_tasks()] == ["b"]
            b = await store.get_task("b")
            assert b is not None and (b.version, b.every) == (1, 30)

        self.run_store(make_backend, body)

    def test_get_task_of_an_unknown_name_or_version_is_none(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            await store.put_task(_task("report"))
            assert await store.get_task("nope") is None
            assert await store.get_task("report", 7) is None

        self.run_store(make_backend, body)

    def test_list_tasks_gives_the_current_version_of_each_task(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            await store.put_tasks([_task("b"), _task("a")])
            await store.put_task(_task("a", every=5), replace=True)
            listed = sorted((t.name, t.version, t.every) for t in await store.list_tasks())
            assert listed == [("a", 2, 5.0), ("b", 1, 30.0)]

        self.run_store(make_backend, body)

    def test_delete_task_removes_task_next_fire_and_progress_but_keeps_runs(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            now = clock.now()
            await store.put_task(_task("child", parent_tasks=["p1", "p2"]))
            await store.set_next_fire("child", now)
            await store.parent_succeeded("child", "p1")
            run = _run("child", now)
            await store.record_run(run)
            assert await store.delete_task("child") is True
            assert await store.get_task("child") is None
            assert await store.get_task("child", 1) is None
            assert await store.get_next_fire("child") is None
            assert await store.next_due_time() is None
            assert await store.due_fires(now, 10) == []
            assert await store.parent_succeeded("child", "p2") == frozenset({"p2"})
            assert await store.get_run(run.id) is not None
            assert await store.delete_task("child") is False

        self.run_store(make_backend, body)

    def test_a_task_added_again_after_delete_continues_its_version_numbers(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            await store.put_task(_task("report"))
            await store.put_task(_task("report"), replace=True)
            await store.delete_task("report")
            again = await store.put_task(_task("report"))
            assert again.version == 3

        self.run_store(make_backend, body)

    # -- schedule -----------------------------------------------------------------------------

    def test_set_next_fire_is_read_back_and_none_clears_it(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            when = clock.now() + timedelta(seconds=30)
            await store.set_next_fire("a", when)
            assert await store.get_next_fire("a") == when
            await store.set_next_fire("a", None)
            assert await store.get_next_fire("a") is None
            assert await store.next_due_time() is None

        self.run_store(make_backend, body)

    def test_next_due_time_is_the_earliest_next_fire(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            now = clock.now()
            assert await store.next_due_time() is None
            await store.set_next_fire("a", now + timedelta(seconds=30))
            await store.set_next_fire("b", now + timedelta(seconds=10))
            await store.set_next_fire("c", now + timedelta(seconds=20))
            assert await store.next_due_time() == now + timedelta(seconds=10)
            await store.set_next_fire("b", now + timedelta(seconds=40))
            assert await store.next_due_time() == now + timedelta(seconds=20)

        self.run_store(make_backend, body)

    def test_due_fires_lists_fires_at_or_before_now_earliest_first(self, make_backend: Any) -> None:
        from sts_core.interfaces import DueFire

        async def body(store: Store, clock: FakeClock) -> None:
            now = clock.now()
            await store.set_next_fire("late", now + timedelta(seconds=1))
            await store.set_next_fire("exact", now)
            await store.set_next_fire("old", now - timedelta(seconds=20))
            await store.set_next_fire("older", now - timedelta(seconds=30))
            due = await store.due_fires(now, 10)
            assert due == [
                DueFire("older", now - timedelta(seconds=30)),
                DueFire("old", now - timedelta(seconds=20)),
                DueFire("exact", now),
            ]
            assert await store.due_fires(now, 10) == due  # listing claims nothing

        self.run_store(make_backend, body)

    def test_due_fires_returns_at_most_limit_fires(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            now = clock.now()
            for i in range(10):
                await store.set_next_fire(f"t{i}", now - timedelta(seconds=10 - i))
            due = await store.due_fires(now, 3)
            assert [fire.task_name for fire in due] == ["t0", "t1", "t2"]

        self.run_store(make_backend, body)

    def test_claim_fire_moves_the_next_fire_or_clears_it(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            now = clock.now()
            await store.set_next_fire("a", now)
            await store.set_next_fire("b", now)
            fire_a, fire_b = sorted(await store.due_fires(now, 10), key=lambda fire: fire.task_name)
            assert await store.claim_fire(fire_a, now + timedelta(seconds=30)) is True
            assert await store.claim_fire(fire_b, None) is True
            assert await store.get_next_fire("a") == now + timedelta(seconds=30)
            assert await store.get_next_fire("b") is None
            assert await store.due_fires(now, 10) == []
            assert await store.next_due_time() == now + timedelta(seconds=30)

        self.run_store(make_backend, body)

    def test_claim_fire_is_won_exactly_once_by_concurrent_claimers(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            now = clock.now()
            await store.set_next_fire("a", now)
            [fire] = await store.due_fires(now, 10)
            following = now + timedelta(seconds=30)
            results = await asyncio.gather(*(store.claim_fire(fire, following) for _ in range(8)))
            assert sorted(results) == [False] * 7 + [True]
            assert await store.get_next_fire("a") == following

        self.run_store(make_backend, body)

    def test_claim_fire_fails_once_the_tasks_next_fire_changed(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            now = clock.now()
            await store.set_next_fire("a", now)
            [fire] = await store.due_fires(now, 10)
            moved = now + timedelta(seconds=5)
            await store.set_next_fire("a", moved)
            assert await store.claim_fire(fire, now + timedelta(seconds=30)) is False
            assert await store.get_next_fire("a") == moved
            await store.delete_task("a")
            assert await store.claim_fire(fire, None) is False

        self.run_store(make_backend, body)

    # -- runs ---------------------------------------------------------------------------------

    def test_record_run_then_get_run_gives_an_equal_record(self, make_backend: Any) -> None:
        from sts_core.model import RunState

        async def body(store: Store, clock: FakeClock) -> None:
            run = _run("a", clock.now(), state=RunState.FAILED, error_type="ValueError", error_message="bad",
                       duration=1.5, output="line\n", attempt=2)
            await store.record_run(run)
            fetched = await store.get_run(run.id)
            assert fetched is not None and fetched.to_dict() == run.to_dict()
            assert await store.get_run("no-such-run") is None

        self.run_store(make_backend, body)

    def test_a_recorded_run_does_not_change_when_the_caller_mutates_its_object(self, make_backend: Any) -> None:
        from sts_core.model import RunState

        async def body(store: Store, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await store.record_run(run)
            run.state = RunState.SUCCEEDED
            fetched = await store.get_run(run.id)
            assert fetched is not None and fetched.state is RunState.SCHEDULED
            fetched.state = RunState.FAILED
            again = await store.get_run(run.id)
            assert again is not None and again.state is RunState.SCHEDULED

        self.run_store(make_backend, body)

    def test_record_run_with_a_known_id_updates_the_record(self, make_backend: Any) -> None:
        from sts_core.model import RunState

        async def body(store: Store, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await store.record_run(run)
            run.state = RunState.SUCCEEDED
            run.result = "42"
            await store.record_run(run)
            fetched = await store.get_run(run.id)
            assert fetched is not None and (fetched.state, fetched.result) == (RunState.SUCCEEDED, "42")
            assert [r.id for r in await store.list_runs("a")] == [run.id]

        self.run_store(make_backend, body)

    def test_list_runs_gives_newest_first_filtered_by_task_and_states(self, make_backend: Any) -> None:
        from sts_core.model import RunState

        async def body(store: Store, clock: FakeClock) -> None:
            ids = {}
            for i, (task, state) in enumerate(
                [("a", RunState.SUCCEEDED), ("b", RunState.FAILED), ("a", RunState.FAILED), ("a", RunState.SKIPPED)]
            ):
                run = _run(task, clock.now(), state=state)
                ids[i] = run.id
                await store.record_run(run)
                clock.advance(1)
            assert [r.id for r in await store.list_runs()] == [ids[3], ids[2], ids[1], ids[0]]
            assert [r.id for r in await store.list_runs("a")] == [ids[3], ids[2], ids[0]]
            assert [r.id for r in await store.list_runs(states=[RunState.FAILED])] == [ids[2], ids[1]]
            failed_or_skipped_a = await store.list_runs("a", states=[RunState.FAILED, RunState.SKIPPED])
            assert [r.id for r in failed_or_skipped_a] == [ids[3], ids[2]]
            assert [r.id for r in await store.list_runs(limit=2)] == [ids[3], ids[2]]
            assert await store.list_runs("unknown") == []

        self.run_store(make_backend, body)

    def test_history_keeps_the_newest_max_runs_per_task_for_each_task(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            a_ids = []
            for _ in range(5):
                run = _run("a", clock.now())
                a_ids.append(run.id)
                await store.record_run(run)
            b = _run("b", clock.now())
            await store.record_run(b)
            assert [r.id for r in await store.list_runs("a")] == a_ids[:1:-1]
            assert await store.get_run(a_ids[0]) is None
            assert await store.get_run(b.id) is not None

        self.run_store(make_backend, body, max_runs_per_task=3)

    def test_updating_a_run_does_not_count_again_against_retention(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            first, second = _run("a", clock.now()), _run("a", clock.now())
            await store.record_run(first)
            await store.record_run(second)
            for _ in range(3):
                await store.record_run(second)
            assert {r.id for r in await store.list_runs("a")} == {first.id, second.id}

        self.run_store(make_backend, body, max_runs_per_task=2)

    def test_history_drops_runs_older_than_max_age_when_runs_are_recorded(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            old = _run("a", clock.now())
            await store.record_run(old)
            clock.advance(40)
            middle = _run("b", clock.now())
            await store.record_run(middle)
            clock.advance(30)  # old is 70s old, middle 30s
            new = _run("a", clock.now())
            await store.record_run(new)
            assert await store.get_run(old.id) is None
            assert [r.id for r in await store.list_runs()] == [new.id, middle.id]

        self.run_store(make_backend, body, max_age=60.0)

    # -- dependencies -------------------------------------------------------------------------

    def test_parent_succeeded_accumulates_parents_per_child_until_reset(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            assert await store.parent_succeeded("child", "p1") == frozenset({"p1"})
            assert await store.parent_succeeded("child", "p1") == frozenset({"p1"})
            assert await store.parent_succeeded("other", "p2") == frozenset({"p2"})
            assert await store.parent_succeeded("child", "p2") == frozenset({"p1", "p2"})
            await store.reset_parents("child")
            assert await store.parent_succeeded("child", "p2") == frozenset({"p2"})
            await store.reset_parents("never-seen")

        self.run_store(make_backend, body)


class BrokerContract(_BackendSuite):
    """What every ``Broker`` must do. Subclass as ``Test<Backend>Broker`` and give ``make_backend``.

    Lease rules tested here: each delivery has a new, larger token; ack and extend succeed
    with the current token, also after the lease ended as long as the run has not been
    delivered again; a redelivery increments ``delivery_count``.
    """

    lease_time = DEFAULT_SETTINGS["lease_time"]

    def run_broker(
        self, make_backend: Any, body: Callable[[Broker, FakeClock], Awaitable[Any]], **settings: Any
    ) -> Any:
        async def with_broker(backend: Backend, clock: FakeClock) -> Any:
            return await body(backend.broker, clock)

        return self.run_backend(make_backend, with_broker, **settings)

    def test_an_enqueued_run_is_delivered_under_a_lease(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run)
            delivery = await broker.consume(0)
            assert delivery is not None
            assert delivery.run.to_dict() == run.to_dict()
            assert delivery.delivery_count == 1
            assert delivery.lease_until == pytest.approx(clock.monotonic() + self.lease_time)
            assert await broker.ack(delivery) is True
            assert await broker.consume(0) is None

        self.run_broker(make_backend, body)

    def test_the_delivered_run_is_the_one_enqueued_not_later_changes_to_it(self, make_backend: Any) -> None:
        from sts_core.model import RunState

        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run)
            run.state = RunState.FAILED
            delivery = await broker.consume(0)
            assert delivery is not None and delivery.run.state is RunState.SCHEDULED

        self.run_broker(make_backend, body)

    def test_consume_with_zero_timeout_returns_none_at_once_when_nothing_is_ready(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            assert await _finish(broker.consume(0)) is None

        self.run_broker(make_backend, body)

    def test_consume_returns_none_when_the_clock_passes_its_timeout(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            consumer = asyncio.create_task(broker.consume(5))
            await clock.until_waiting(1)
            clock.advance(4)
            await clock.settle()
            assert not consumer.done()
            clock.advance(1)
            assert await _finish(consumer) is None

        self.run_broker(make_backend, body)

    def test_a_waiting_consumer_wakes_when_a_run_is_enqueued(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            consumer = asyncio.create_task(broker.consume(100))
            await clock.until_waiting(1)
            run = _run("a", clock.now())
            await broker.enqueue(run)
            delivery = await _finish(consumer)
            assert delivery is not None and delivery.run.id == run.id

        self.run_broker(make_backend, body)

    def test_ready_runs_are_delivered_in_enqueue_order(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            runs = [_run(f"t{i}", clock.now()) for i in range(20)]
            for run in runs:
                await broker.enqueue(run)
            delivered = []
            while (delivery := await broker.consume(0)) is not None:
                delivered.append(delivery.run.id)
                await broker.ack(delivery)
            assert delivered == [run.id for run in runs]

        self.run_broker(make_backend, body)

    def test_a_delayed_run_is_not_delivered_before_its_time(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run, clock.now() + timedelta(seconds=10))
            assert await broker.consume(0) is None
            clock.advance(9.5)
            assert await broker.consume(0) is None
            clock.advance(0.5)
            delivery = await broker.consume(0)
            assert delivery is not None and delivery.run.id == run.id

        self.run_broker(make_backend, body)

    def test_a_run_enqueued_for_a_past_time_is_ready_at_once(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run, clock.now() - timedelta(seconds=5))
            delivery = await broker.consume(0)
            assert delivery is not None and delivery.run.id == run.id

        self.run_broker(make_backend, body)

    def test_delayed_runs_are_delivered_in_time_order(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            later, sooner = _run("later", clock.now()), _run("sooner", clock.now())
            await broker.enqueue(later, clock.now() + timedelta(seconds=20))
            await broker.enqueue(sooner, clock.now() + timedelta(seconds=10))
            clock.advance(30)
            first, second = await broker.consume(0), await broker.consume(0)
            assert first is not None and second is not None
            assert [first.run.id, second.run.id] == [sooner.id, later.id]

        self.run_broker(make_backend, body)

    def test_a_waiting_consumer_receives_a_delayed_run_when_it_is_due(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            consumer = asyncio.create_task(broker.consume(100))
            await clock.until_waiting(1)
            run = _run("a", clock.now())
            await broker.enqueue(run, clock.now() + timedelta(seconds=10))
            await clock.settle()
            await clock.until_waiting(1)
            clock.advance(9)
            await clock.settle()
            assert not consumer.done()
            clock.advance(1)
            delivery = await _finish(consumer)
            assert delivery is not None and delivery.run.id == run.id

        self.run_broker(make_backend, body)

    def test_an_expired_lease_is_redelivered_with_a_new_token_and_count(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            run = _run("a", clock.now())
            await broker.enqueue(run)
            first = await broker.consume(0)
            assert first is not None
            clock.advance(self.lease_time / 2)
            assert await broker.consume(0) is None
            clock.advance(self.lease_time / 2)
            second = await broker.consume(0)
            assert second is not None and second.run.to_dict() == run.to_dict()
            assert second.token > first.token
            assert second.delivery_count == 2
            assert await broker.ack(first) is False
            assert await broker.extend(first) is False
            assert await broker.ack(second) is True
            assert await broker.depth() == 0

        self.run_broker(make_backend, body)

    def test_a_waiting_consumer_receives_a_run_whose_lease_expired(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            await broker.enqueue(_run("a", clock.now()))
            first = await broker.consume(0)
            assert first is not None
            consumer = asyncio.create_task(broker.consume(1000))
            await clock.until_waiting(1)
            clock.advance(self.lease_time)
            second = await _finish(consumer)
            assert second is not None and second.run.id == first.run.id and second.delivery_count == 2

        self.run_broker(make_backend, body)

    def test_a_lease_that_ended_can_be_acked_until_the_run_is_delivered_again(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            await broker.enqueue(_run("a", clock.now()))
            delivery = await broker.consume(0)
            assert delivery is not None
            clock.advance(self.lease_time + 1)
            assert await broker.ack(delivery) is True
            assert await broker.consume(0) is None
            assert await broker.depth() == 0

        self.run_broker(make_backend, body)

    def test_extend_renews_the_lease_so_the_run_is_not_redelivered(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            await broker.enqueue(_run("a", clock.now()))
            delivery = await broker.consume(0)
            assert delivery is not None
            clock.advance(self.lease_time * 0.75)
            assert await broker.extend(delivery) is True
            assert delivery.lease_until == pytest.approx(clock.monotonic() + self.lease_time)
            clock.advance(self.lease_time * 0.75)
            assert await broker.consume(0) is None
            assert await broker.ack(delivery) is True
            clock.advance(self.lease_time * 2)
            assert await broker.consume(0) is None

        self.run_broker(make_backend, body)

    def test_ack_and_extend_with_a_token_never_issued_are_refused(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            await broker.enqueue(_run("a", clock.now()))
            delivery = await broker.consume(0)
            assert delivery is not None
            assert await broker.ack(delivery) is True
            assert await broker.ack(delivery) is False
            assert await broker.extend(delivery) is False

        self.run_broker(make_backend, body)

    def test_depth_counts_ready_delayed_and_unacked_runs(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            assert await broker.depth() == 0
            await broker.enqueue(_run("a", clock.now()))
            await broker.enqueue(_run("b", clock.now()))
            await broker.enqueue(_run("c", clock.now()), clock.now() + timedelta(seconds=60))
            assert await broker.depth() == 3
            delivery = await broker.consume(0)
            assert delivery is not None
            assert await broker.depth() == 3
            await broker.ack(delivery)
            assert await broker.depth() == 2

        self.run_broker(make_backend, body)

    def test_every_waiting_consumer_gets_work_when_several_runs_arrive(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            consumers = [asyncio.create_task(broker.consume(100)) for _ in range(3)]
            await clock.until_waiting(3)
            for name in "abc":
                await broker.enqueue(_run(name, clock.now()))
            deliveries = await _finish(asyncio.gather(*consumers))
            assert sorted(d.run.task_name for d in deliveries) == ["a", "b", "c"]

        self.run_broker(make_backend, body)

    def test_a_cancelled_consumer_loses_no_run(self, make_backend: Any) -> None:
        async def body(broker: Broker, clock: FakeClock) -> None:
            waiting = asyncio.create_task(broker.consume(100))
            await clock.until_waiting(1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            run = _run("a", clock.now())
            await broker.enqueue(run)
            delivery = await _finish(broker.consume(100))
            assert delivery is not None and delivery.run.id == run.id

        self.run_broker(make_backend, body)

    def test_concurrent_consumers_receive_every_run_exactly_once(self, make_backend: Any) -> None:
        total, consumers = 500, 4

        async def body(broker: Broker, clock: FakeClock) -> None:
            received: list[str] = []
            all_in = asyncio.Event()

            async def consume_until_idle() -> None:
                while (delivery := await broker.consume(10)) is not None:
                    received.append(delivery.run.id)
                    if len(received) >= total:
                        all_in.set()
                    assert await broker.ack(delivery) is True

            tasks = [asyncio.create_task(consume_until_idle()) for _ in range(consumers)]
            runs = [_run(f"t{i % 7}", clock.now()) for i in range(total)]
            for i, run in enumerate(runs):
                await broker.enqueue(run)
                if i % 25 == 0:
                    await asyncio.sleep(0)
            await _finish(all_in.wait())
            await clock.until_waiting(consumers)
            clock.advance(10)
            await _finish(asyncio.gather(*tasks))
            assert len(received) == total
            assert sorted(received) == sorted(run.id for run in runs)
            assert await broker.depth() == 0

        self.run_broker(make_backend, body)
