"""Only the run that kills its worker is charged for it (``sts_core.isolation``): a run lost beside
others runs alone when delivered again, only losses while alone count toward
``executor.max_redeliveries``, and deliveries that never recorded a start are no strikes.

The engine tests drive the worker as ``test_engine_redelivery`` does (memory backend, fake clock,
no worker loop); a worker is "lost" by cancelling every run it executes, which leaves their
``running`` records behind as a SIGKILL would.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sts.task import current_run
from sts_core.errors import BackendUnavailableError
from sts_core.interfaces import Delivery
from sts_core.isolation import PATIENCE, UNCLEAR_PER_REDELIVERY, Attempts, Isolation
from sts_core.run import Run, RunState
from sts_core.task import Task
from sts_core.testing import FakeClock

# -- the gate -------------------------------------------------------------------------------------------


def test_a_suspect_waits_for_the_runs_executing_and_the_worker_takes_nothing_meanwhile() -> None:
    async def main() -> None:
        gate, clock = Isolation(), FakeClock()
        assert gate.enter_now(False) and gate.enter_now(False)
        suspect = asyncio.create_task(gate.enter(True, clock))
        await asyncio.sleep(0)
        assert not suspect.done() and gate.closed
        assert not gate.enter_now(False)  # first come, first served: behind the suspect
        later = asyncio.create_task(gate.enter(False, clock))
        taking = asyncio.create_task(gate.until_open())
        gate.leave(False)
        await asyncio.sleep(0)
        assert not suspect.done()
        gate.leave(False)
        await asyncio.sleep(0.01)
        assert suspect.done() and suspect.result() is True and not later.done() and not taking.done()
        gate.leave(True)
        await asyncio.sleep(0)
        assert later.done() and later.result() is False and taking.done() and not gate.closed
        gate.leave(False)
        assert gate.enter_now(True)

    asyncio.run(main())


def test_a_suspect_that_finds_no_moment_alone_within_its_patience_runs_beside_the_others() -> None:
    async def main() -> None:
        gate, clock = Isolation(), FakeClock()
        assert gate.enter_now(False)  # a long run
        suspect = asyncio.create_task(gate.enter(True, clock))
        await asyncio.sleep(0)
        clock.advance(PATIENCE - 1)
        await asyncio.sleep(0.01)
        assert not suspect.done() and gate.closed
        clock.advance(1)
        await asyncio.sleep(0.01)
        assert suspect.done() and suspect.result() is False  # admitted beside, not alone
        assert not gate.closed and gate.enter_now(False)

    asyncio.run(main())


def test_a_waiting_attempt_cancelled_leaves_the_gate_as_it_was() -> None:
    async def main() -> None:
        gate = Isolation()
        assert gate.enter_now(False)
        suspect = asyncio.create_task(gate.enter(True, FakeClock()))
        await asyncio.sleep(0)
        suspect.cancel()
        await asyncio.gather(suspect, return_exceptions=True)
        assert not gate.closed and gate.enter_now(False)

    asyncio.run(main())


# -- the rule ---------------------------------------------------------------------------------------------


def _record(number: int, state: RunState, *, isolated: bool = False) -> Run:
    from datetime import UTC, datetime

    return Run(id=f"r.d{number}", task_name="t", task_version=1, scheduled_for=datetime(2026, 1, 1, tzinfo=UTC),
               state=state, isolated=isolated)


def _delivery(count: int, handed_back: int = 0) -> Delivery:
    return Delivery(_record(1, RunState.SCHEDULED), token=1, lease_until=0.0, delivery_count=count,
                    handed_back=handed_back)


def test_only_losses_while_running_alone_are_strikes() -> None:
    beside = Attempts.of([_record(1, RunState.LOST)] * 3)
    assert beside.suspect and beside.poison_reason(_delivery(4), 1, counts_may_skip=False) is None
    alone = Attempts.of([_record(3, RunState.LOST, isolated=True), _record(2, RunState.LOST, isolated=True),
                         _record(1, RunState.LOST)])
    reason = alone.poison_reason(_delivery(4), 1, counts_may_skip=False)
    assert reason == "delivered 4 times; its worker was lost 2 times while it ran alone (executor.max_redeliveries=1)"


def test_losses_before_a_start_or_beside_others_are_poison_only_past_a_generous_bound() -> None:
    limit = 1
    bound = UNCLEAR_PER_REDELIVERY * (limit + 1)
    none = Attempts.of([])
    assert none.poison_reason(_delivery(bound + 1), limit, counts_may_skip=False) is None
    assert "before it recorded a start" in none.poison_reason(_delivery(bound + 2), limit, counts_may_skip=False)
    assert none.poison_reason(_delivery(bound + 2), limit, counts_may_skip=True) is None  # counts may skip: twice
    beside = Attempts.of([_record(1, RunState.LOST)] * (bound + 1))
    assert "while other runs executed beside it" in beside.poison_reason(_delivery(bound + 2), limit,
                                                                         counts_may_skip=False)
    # hand-backs (with or without a record) and recorded starts are not counted as unstarted
    some = Attempts.of([_record(2, RunState.INTERRUPTED), _record(1, RunState.LOST)])
    assert some.unstarted(_delivery(bound + 4, handed_back=3)) == bound - 1


# -- the engine -----------------------------------------------------------------------------------------

#: (task, isolated, how many runs executed on the worker when it started)
starts: list[tuple[str, bool, int]] = []
executing: set[str] = set()
_engine: list[Any] = []


async def healthy(seconds: float = 0.2) -> str:
    """Slower than the poison run: executing whenever a poison run beside it kills the worker."""
    return await _executes("healthy", asyncio.sleep(seconds))


async def poison() -> None:
    """Kills its worker (every run the worker executes is cancelled, as by a SIGKILL) soon after it starts."""

    async def kill() -> None:
        await asyncio.sleep(0.02)
        for task, _ in list(_engine[0].in_flight.executing.values()):
            task.cancel()
        await asyncio.sleep(10)

    await _executes("poison", kill())


async def _executes(name: str, work: Any) -> str:
    run = current_run()
    starts.append((name, run.isolated, len(executing)))
    executing.add(run.id)
    try:
        await work
    finally:
        executing.discard(run.id)
    return name


async def _lose_worker_round(engine: Any, broker: Any, clock: Any) -> list[str]:
    """Take every run ready and execute them side by side, as one worker would, until they end or
    the worker is lost; then let the leases of the lost runs end. The ids taken."""
    taken = []
    while (delivery := await broker.consume(0)) is not None:
        taken.append(delivery.run.id)
        engine.worker_loop._start(delivery)
    for _ in range(200):
        if not engine.in_flight.executing:
            break
        await asyncio.sleep(0.01)
    clock.advance(60)  # memory lease_time: the lost runs are delivered again
    return taken


@pytest.mark.parametrize("max_redeliveries", [0, 2])
def test_a_run_lost_beside_a_poison_run_runs_alone_and_is_never_dead_lettered(
    make_scheduler, clock, max_redeliveries: int
) -> None:
    async def main() -> None:
        starts.clear()
        async with make_scheduler(executor={"max_redeliveries": max_redeliveries}) as scheduler:
            engine, broker = scheduler.engine, scheduler.backend.broker
            _engine[:] = [engine]
            await scheduler.add_tasks([Task(name, function, every=3600) for name, function in
                                       [("poison", poison), ("h1", healthy), ("h2", healthy)]])
            runs = {name: (await engine.dispatch(engine.plans.current(name), clock.now(), "schedule")).id
                    for name in ("poison", "h1", "h2")}
            rounds = 0
            while await broker.depth() and rounds < 20:
                await _lose_worker_round(engine, broker, clock)
                rounds += 1
            records = {name: await scheduler.runs(name) for name in runs}
            dead = await broker.dead_letters()
        states = {name: sorted(r.state.value for r in runs_) for name, runs_ in records.items()}
        for name in ("h1", "h2"):
            assert states[name].count("succeeded") == 1 and "poison" not in states[name], states
        assert [d["id"] for d in dead] == [runs["poison"]], states
        # once with the others, then alone max_redeliveries + 1 times, each loss a strike
        assert states["poison"] == ["lost"] * (max_redeliveries + 2) + ["poison"], states
        poisoned = next(r for r in records["poison"] if r.state is RunState.POISON)
        assert f"lost {max_redeliveries + 1} times while it ran alone" in poisoned.error_message
        alone = [isolated for name, isolated, _ in starts if name == "poison"]
        assert alone == [False] + [True] * (max_redeliveries + 1)
        assert all(beside == 0 for _, isolated, beside in starts if isolated), starts  # alone means alone
        lost_alone = [r for r in records["poison"] if r.state is RunState.LOST and r.isolated]
        assert all("a loss toward executor.max_redeliveries" in r.error_message for r in lost_alone)

    asyncio.run(main())


def test_a_start_record_that_fails_is_not_a_worker_loss(make_scheduler, clock) -> None:
    async def main() -> None:
        async with make_scheduler(executor={"max_redeliveries": 0}) as scheduler:
            engine, broker, store = scheduler.engine, scheduler.backend.broker, scheduler.backend.store
            await scheduler.add_tasks([Task("t", healthy, kwargs={"seconds": 0}, every=3600)])
            run = await engine.dispatch(engine.plans.current("t"), clock.now(), "schedule")
            record_run = store.record_run

            async def unavailable(run: Run) -> None:
                raise BackendUnavailableError("redis at 127.0.0.1:1 is unreachable")

            store.record_run = unavailable
            with pytest.raises(BackendUnavailableError):
                await engine.worker_loop.execute_delivered(await broker.consume(0))
            store.record_run = record_run
            clock.advance(60)
            again = await broker.consume(0)
            assert again.delivery_count == 2
            await engine.worker_loop.execute_delivered(again)
            records = await scheduler.runs("t")
        assert [(r.id, r.state, r.isolated) for r in records] == [(f"{run.id}.d2", RunState.SUCCEEDED, False)]

    asyncio.run(main())
