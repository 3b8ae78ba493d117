"""``StoreContract``: the conformance suite every ``Store`` runs (see ``sts_core.testing``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from sts_core.testing.clock import FakeClock
from sts_core.testing.contracts import _BackendSuite, _run, _task

if TYPE_CHECKING:
    from sts_core.interfaces import Backend, Store


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
            both = frozenset({"p1", "p2"})
            await store.parent_succeeded("child", "p1", both, "run-1")
            assert await store.begin_fire("child", "f1", 1) is True
            run = _run("child", now)
            await store.record_run(run)
            assert await store.delete_task("child") is True
            assert await store.get_task("child") is None
            assert await store.get_task("child", 1) is None
            assert await store.get_next_fire("child") is None
            assert await store.next_due_time() is None
            assert await store.due_fires(now, 10) == []
            assert await store.parent_succeeded("child", "p2", both, "run-2") is False
            assert await store.begin_fire("child", "f2", 1) is True
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
        from sts_core.run import RunState

        async def body(store: Store, clock: FakeClock) -> None:
            run = _run("a", clock.now(), state=RunState.FAILED, error_type="ValueError", error_message="bad",
                       duration=1.5, output="line\n", attempt=2)
            await store.record_run(run)
            fetched = await store.get_run(run.id)
            assert fetched is not None and fetched.to_dict() == run.to_dict()
            assert await store.get_run("no-such-run") is None

        self.run_store(make_backend, body)

    def test_a_recorded_run_does_not_change_when_the_caller_mutates_its_object(self, make_backend: Any) -> None:
        from sts_core.run import RunState

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
        from sts_core.run import RunState

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

    def test_start_run_records_a_new_run_once_and_answers_a_copy_with_the_first_record(
        self, make_backend: Any
    ) -> None:
        from sts_core.run import RunState

        async def body(store: Store, clock: FakeClock) -> None:
            from sts_core.interfaces import StartsRunsOnce

            if not isinstance(store, StartsRunsOnce):
                pytest.skip("this store does not offer start_run (optional)")
            start_run = store.start_run
            run = _run("a", clock.now(), state=RunState.RUNNING, worker="w1")
            assert await start_run(run) is None
            copy = _run("a", clock.now(), id=run.id, state=RunState.RUNNING, worker="w2")
            existing = await start_run(copy)
            assert existing is not None and existing.to_dict() == run.to_dict()
            fetched = await store.get_run(run.id)
            assert fetched is not None and fetched.worker == "w1"
            assert [r.id for r in await store.list_runs("a")] == [run.id]

        self.run_store(make_backend, body)

    def test_list_runs_gives_newest_first_filtered_by_task_and_states(self, make_backend: Any) -> None:
        from sts_core.run import RunState

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

    def test_parent_succeeded_is_true_once_every_required_parent_succeeded_then_resets(
        self, make_backend: Any
    ) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            both = frozenset({"p1", "p2"})
            assert await store.parent_succeeded("child", "p1", both, "run-3") is False
            assert await store.parent_succeeded("child", "p1", both, "run-4") is False
            assert await store.parent_succeeded("other", "p2", frozenset({"p2", "p3"}), "run-5") is False
            assert await store.parent_succeeded("child", "p2", both, "run-6") is True
            assert await store.parent_succeeded("child", "p2", both, "run-7") is False  # progress was reset
            await store.reset_parents("child")
            assert await store.parent_succeeded("child", "p1", both, "run-8") is False
            await store.reset_parents("never-seen")
            assert await store.parent_succeeded("solo", "p", frozenset({"p"}), "run-9") is True

        self.run_store(make_backend, body)

    def test_parent_succeeded_asked_again_with_the_completing_token_answers_true_and_changes_nothing(
        self, make_backend: Any
    ) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            both = frozenset({"p1", "p2"})
            assert await store.parent_succeeded("child", "p1", both, "a") is False
            assert await store.parent_succeeded("child", "p2", both, "b") is True
            assert await store.parent_succeeded("child", "p2", both, "b") is True  # the same step, repeated
            assert await store.parent_succeeded("child", "p1", both, "c") is False  # progress stayed reset

        self.run_store(make_backend, body)

    def test_parent_succeeded_starts_the_child_once_when_parents_finish_concurrently(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            parents = frozenset(f"p{i}" for i in range(8))
            for round_ in range(5):
                results = await asyncio.gather(
                    *(store.parent_succeeded("child", p, parents, f"{round_}-{p}") for p in sorted(parents))
                )
                assert results.count(True) == 1, f"round {round_}: {results}"

        self.run_store(make_backend, body)

    # -- fires in flight ----------------------------------------------------------------------

    def test_begin_fire_admits_up_to_limit_fires_per_task_until_they_end(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            assert await store.begin_fire("a", "a@1", 2) is True
            assert await store.begin_fire("a", "a@2", 2) is True
            assert await store.begin_fire("a", "a@3", 2) is False
            assert await store.begin_fire("a", "a@1", 2) is True  # already counted
            assert await store.begin_fire("b", "b@1", 1) is True
            await store.touch_fire("a", "a@1")
            await store.end_fire("a", "a@1")
            assert await store.begin_fire("a", "a@3", 2) is True
            await store.end_fire("a", "never-begun")
            await store.end_fire("nobody", "x")

        self.run_store(make_backend, body)

    def test_begin_fire_is_won_by_exactly_limit_concurrent_callers(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            results = await asyncio.gather(*(store.begin_fire("a", f"a@{i}", 3) for i in range(20)))
            assert results.count(True) == 3

        self.run_store(make_backend, body)

    def test_last_version_survives_delete(self, make_backend: Any) -> None:
        async def body(store: Store, clock: FakeClock) -> None:
            assert await store.last_version("a") == 0
            await store.put_task(_task("a"))
            await store.put_task(_task("a"), replace=True)
            assert await store.last_version("a") == 2
            await store.delete_task("a")
            assert await store.last_version("a") == 2

        self.run_store(make_backend, body)

    # -- what the Protocol declares, and the optional capabilities -----------------------------

    def test_the_store_declares_whether_it_is_shared(self, make_backend: Any) -> None:
        from sts_core.interfaces import Store

        async def body(store: Store, clock: FakeClock) -> None:
            assert isinstance(store, Store)
            assert isinstance(store.shared, bool)

        self.run_store(make_backend, body)

    def test_get_tasks_returns_the_stored_ones_of_the_names_asked(self, make_backend: Any) -> None:
        from sts_core.interfaces import ReadsTasksByName

        async def body(store: Store, clock: FakeClock) -> None:
            if not isinstance(store, ReadsTasksByName):
                pytest.skip("this store does not offer get_tasks (optional)")
            await store.put_tasks([_task(f"t{i}") for i in range(3)])
            await store.put_task(_task("t2", every=5), replace=True)
            found = await store.get_tasks(["t2", "nope", "t0", "t2"])
            assert sorted(found) == ["t0", "t2"]
            current = await store.get_task("t2")
            assert current is not None and found["t2"].to_dict() == current.to_dict() and current.version == 2
            assert await store.get_tasks([]) == {}

        self.run_store(make_backend, body)

    def test_an_outbox_stages_a_run_that_one_sweep_takes_after_the_grace_until_it_is_unstaged(
        self, make_backend: Any
    ) -> None:
        from sts_core.interfaces import Outbox

        async def body(store: Store, clock: FakeClock) -> None:
            if not isinstance(store, Outbox):
                pytest.skip("this store has no outbox (optional)")
            run = _run("a", clock.now())
            at = clock.now() + timedelta(seconds=5)
            assert await store.stage_fire(None, run, 1, at) == "staged"
            assert await store.take_stranded(clock.now() - timedelta(seconds=1), 10) == []
            clock.advance(20)
            (taken,) = await store.take_stranded(clock.now() - timedelta(seconds=15), 10)
            assert taken[0].to_dict() == run.to_dict() and taken[1] == at
            assert await store.take_stranded(clock.now() - timedelta(seconds=15), 10) == []  # marked taken
            clock.advance(20)
            assert len(await store.take_stranded(clock.now() - timedelta(seconds=15), 10)) == 1
            await store.unstage(run.id)
            clock.advance(20)
            assert await store.take_stranded(clock.now(), 10) == []

        self.run_store(make_backend, body)

    def test_staging_claims_the_fire_and_counts_it_toward_max_instances(self, make_backend: Any) -> None:
        from sts_core.interfaces import DueFire, Outbox

        async def body(store: Store, clock: FakeClock) -> None:
            if not isinstance(store, Outbox):
                pytest.skip("this store has no outbox (optional)")
            await store.put_task(_task("a"))
            due = clock.now()
            await store.set_next_fire("a", due)
            following = due + timedelta(seconds=30)
            first = _run("a", due)
            assert await store.stage_fire((DueFire("a", due), following), first, 1, None) == "staged"
            assert await store.get_next_fire("a") == following
            assert await store.stage_fire((DueFire("a", due), following), _run("a", due), 1, None) == "lost"
            second = _run("a", following)  # another fire of the task while the first is active
            assert await store.stage_fire(None, second, 1, None) == "limited"
            clock.advance(60)
            assert [run.id for run, _ in await store.take_stranded(clock.now(), 10)] == [first.id]

        self.run_store(make_backend, body)

    def test_a_watched_store_reports_stored_tasks_and_new_earliest_fires(self, make_backend: Any) -> None:
        from sts_core.interfaces import WatchedStore
        from sts_core.testing import until

        async def body(store: Store, clock: FakeClock) -> None:
            if not isinstance(store, WatchedStore):
                pytest.skip("this store sends no change notices (optional)")
            changed: list[str | None] = []
            due: list[str] = []
            store.watch(changed.append)
            store.watch_due(due.append)
            await until(lambda: store.notices_live, 5.0, "the store's notices to be live")
            await store.put_task(_task("a"))
            await until(lambda: "a" in changed, 5.0, "a notice that task a was stored")
            await store.set_next_fire("a", clock.now() + timedelta(seconds=5))
            # A new earliest fire is reported to the due watchers, or as a change of the task.
            await until(lambda: "a" in due or changed.count("a") > 1, 5.0, "a notice of a's new earliest fire")

        self.run_store(make_backend, body)
