"""TaskPlans: the compiled plans of a scheduler's tasks, current and older versions."""

from __future__ import annotations

import asyncio

from sts_core.plans import OLDER_VERSIONS_KEPT, TaskPlan, TaskPlans
from sts_core.retry import RetryPolicy
from sts_core.task import Task


def job() -> None:
    """A task function never run here."""


def version(number: int) -> Task:
    return Task("etl", job, every=60).with_version(number)


class Store:
    """Every version of ``etl`` up to ``latest``; counts what the plans loaded and compiled."""

    def __init__(self) -> None:
        self.loaded: list[int] = []
        self.compiled: list[int] = []

    async def load_task(self, name: str, number: int) -> Task | None:
        self.loaded.append(number)
        return version(number) if name == "etl" else None

    def compile(self, task: Task) -> TaskPlan:
        self.compiled.append(task.version)
        return TaskPlan(task=task, trigger=None, task_type=None, prepared=None, retry=RetryPolicy(), timeout=None,
                        misfire="run_once", misfire_grace=0.0, jitter=0.0, settings={}, parents=frozenset())


def test_many_versions_of_one_task_keep_a_bounded_number_of_older_plans():
    store = Store()
    plans = TaskPlans(store.compile, store.load_task)
    for number in range(1, 3 * OLDER_VERSIONS_KEPT):
        plans.install(store.compile(version(number)))
    assert len(plans._by_version) == OLDER_VERSIONS_KEPT
    assert plans.current("etl").task.version == 3 * OLDER_VERSIONS_KEPT - 1


def test_the_current_version_and_recently_replaced_ones_are_served_without_the_store():
    store = Store()
    plans = TaskPlans(store.compile, store.load_task)
    first, second = store.compile(version(1)), store.compile(version(2))
    plans.install(first)
    plans.install(second)
    assert asyncio.run(plans.for_version("etl", 2)) is second
    assert asyncio.run(plans.for_version("etl", 1)) is first  # a run in flight keeps its version's plan
    assert store.loaded == []


def test_a_queued_run_of_an_evicted_version_gets_its_plan_from_the_store_once():
    store = Store()
    plans = TaskPlans(store.compile, store.load_task)
    for number in range(1, OLDER_VERSIONS_KEPT + 3):  # version 1 is pushed out by the later ones
        plans.install(store.compile(version(number)))
    plan = asyncio.run(plans.for_version("etl", 1))
    assert plan is not None and plan.task.version == 1 and store.loaded == [1]
    assert asyncio.run(plans.for_version("etl", 1)) is plan and store.loaded == [1]
    assert len(plans._by_version) == OLDER_VERSIONS_KEPT


def test_a_version_the_store_does_not_hold_has_no_plan():
    store = Store()
    plans = TaskPlans(store.compile, store.load_task)
    assert asyncio.run(plans.for_version("gone", 3)) is None
