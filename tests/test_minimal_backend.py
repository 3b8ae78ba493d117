"""A backend written from the documented Protocols alone (``tests/minimal_backend.py``: mandatory
members only) passes the Store and Broker conformance suites and runs a scheduler end to end, through
the kernel's stepwise fallbacks (``sts_core.steps``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from minimal_backend import MinimalPlugin, build_backend

from sts_core.config import Config
from sts_core.interfaces import AtomicSteps, ConsumesMany, Drains, Outbox, StartsRunsOnce
from sts_core.plugins import PluginManager
from sts_core.run import RunState
from sts_core.scheduler import AsyncTaskScheduler
from sts_core.task import Task
from sts_core.testing import BrokerContract, FakeClock, StoreContract, StubConfig


@pytest.fixture
def make_backend() -> Any:
    def make(clock: FakeClock, settings: dict[str, Any]) -> Any:
        return build_backend(StubConfig({
            "minimal": {"lease_time": settings["lease_time"]},
            "history": {"max_runs_per_task": settings["max_runs_per_task"], "max_age": settings["max_age"]},
        }), clock)

    return make


class TestMinimalStore(StoreContract):
    pass


class TestMinimalBroker(BrokerContract):
    pass


def test_the_minimal_backend_offers_none_of_the_optional_capabilities() -> None:
    backend = build_backend(StubConfig({}), FakeClock())
    assert not isinstance(backend, AtomicSteps)
    assert not isinstance(backend.store, Outbox | StartsRunsOnce)
    assert not isinstance(backend.broker, ConsumesMany | Drains)


async def advance(clock: FakeClock, seconds: float, steps: int) -> None:
    for _ in range(steps):
        clock.advance(seconds / steps)
        await clock.settle()


def test_a_scheduler_on_the_minimal_backend_fires_retries_chains_limits_fires_by_hand_and_stops(
    clock: FakeClock,
) -> None:
    calls: dict[str, list[Any]] = {"tick": [], "flaky": [], "parent": [], "child": [], "manual": []}
    release_slow = asyncio.Event()

    def recorder(name: str, fail_times: int = 0) -> Any:
        async def job() -> str:
            calls[name].append(clock.now())
            if len(calls[name]) <= fail_times:
                raise ConnectionError(f"failure {len(calls[name])}")
            return name

        return job

    async def slow() -> None:
        await release_slow.wait()

    async def main() -> dict[str, list[Any]]:
        plugins = PluginManager(plugins=[("minimal", MinimalPlugin())])
        config = Config({"logging": {"loglevel": "WARNING"}, "scheduler_backend": "minimal"})
        scheduler = AsyncTaskScheduler(config, clock=clock, plugins=plugins)
        async with scheduler:
            assert type(scheduler.backend).__name__ == "MinimalBackend"
            start = clock.now()
            await scheduler.add_tasks([
                Task("tick", recorder("tick"), every="10s"),
                Task("flaky", recorder("flaky", fail_times=2), retries=3, retry_delay="5s", backoff=2),
                Task("parent", recorder("parent")),
                Task("child", recorder("child"), parent_tasks=("parent",)),
                Task("slow", slow, every="10s", max_instances=1),
                Task("manual", recorder("manual"), enabled=False),
            ])
            await scheduler.start()
            await clock.settle()
            await advance(clock, 35, steps=35)
            manual = await scheduler.fire_now("manual")
            await advance(clock, 1, steps=1)
            runs = {name: await scheduler.runs(name) for name in calls | {"slow": []}}
            await scheduler.stop(grace=0.05)
            in_flight = await scheduler.runs("slow")
        # interval fires on time
        assert calls["tick"] == [start + timedelta(seconds=s) for s in (10, 20, 30)]
        # retries with backoff: 5 s, then 10 s
        assert [(t - start).total_seconds() for t in calls["flaky"]] == [0, 5, 15]
        assert sorted(r.state.value for r in runs["flaky"]) == ["retrying", "retrying", "succeeded"]
        # the child runs once its parent succeeded
        assert len(calls["parent"]) == 1 and len(calls["child"]) == 1
        assert calls["child"][0] >= calls["parent"][0]
        # max_instances: the fires at 20 s and 30 s find the one of 10 s still running
        slow_states = sorted(r.state for r in runs["slow"])
        assert slow_states.count(RunState.SKIPPED) == 2 and RunState.RUNNING in slow_states
        # a manual fire of a disabled task runs, under the id returned
        assert len(calls["manual"]) == 1
        assert [(r.id, r.state) for r in runs["manual"]] == [(manual.id, RunState.SUCCEEDED)]
        # the run still in flight at stop is recorded interrupted
        assert RunState.INTERRUPTED in {r.state for r in in_flight}
        return calls

    asyncio.run(main())
