"""sts_core.testing's FakeClock and StubConfig (kernel test support; see the report on where this belongs)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from sts_core.testing import DEFAULT_START, FakeClock, StubConfig


def test_the_fixture_gives_a_clock_at_the_default_start(fake_clock: FakeClock) -> None:
    assert fake_clock.now() == DEFAULT_START == datetime(2026, 1, 1, tzinfo=UTC)
    assert fake_clock.monotonic() == 1000.0


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 1, 1))


def test_advance_moves_wall_and_monotonic_time_and_jump_only_wall_time() -> None:
    clock = FakeClock()
    clock.advance(90)
    assert clock.now() == DEFAULT_START + timedelta(seconds=90)
    assert clock.monotonic() == 1090.0
    clock.jump(-3600)
    assert clock.now() == DEFAULT_START + timedelta(seconds=90 - 3600)
    assert clock.monotonic() == 1090.0
    with pytest.raises(ValueError, match="jump"):
        clock.advance(-1)


def test_wait_returns_true_when_the_event_is_set() -> None:
    clock = FakeClock()

    async def main() -> None:
        event = asyncio.Event()
        waiter = asyncio.create_task(clock.wait(event, 10))
        await clock.until_waiting(1)
        event.set()
        assert await asyncio.wait_for(waiter, 5) is True
        assert await clock.wait(event, 10) is True
        assert clock.sleepers == 0

    asyncio.run(main())


def test_wait_returns_false_once_advance_reaches_the_deadline_and_never_on_real_time() -> None:
    clock = FakeClock()

    async def main() -> None:
        waiter = asyncio.create_task(clock.wait(asyncio.Event(), 0.01))
        await asyncio.sleep(0.03)  # real time passes; fake time does not
        assert not waiter.done()
        clock.advance(0.005)
        await clock.settle()
        assert not waiter.done()
        clock.advance(0.005)
        assert await asyncio.wait_for(waiter, 5) is False

    asyncio.run(main())


def test_wait_without_event_sleeps_until_the_deadline_and_zero_returns_at_once() -> None:
    clock = FakeClock()

    async def main() -> None:
        sleeper = asyncio.create_task(clock.wait(None, 60))
        await clock.until_waiting(1)
        clock.advance(60)
        assert await asyncio.wait_for(sleeper, 5) is False
        assert await clock.wait(None, 0) is False
        assert await clock.wait(asyncio.Event(), -1) is False

    asyncio.run(main())


def test_jump_wakes_no_waiter() -> None:
    clock = FakeClock()

    async def main() -> None:
        sleeper = asyncio.create_task(clock.wait(None, 5))
        await clock.until_waiting(1)
        clock.jump(3600)
        await clock.settle()
        assert not sleeper.done()
        sleeper.cancel()

    asyncio.run(main())


def test_settle_runs_chains_of_ready_callbacks_to_the_end() -> None:
    async def main() -> None:
        steps = []

        async def chain(n: int) -> None:
            for i in range(n):
                steps.append(i)
                await asyncio.sleep(0)

        task = asyncio.create_task(chain(30))
        await FakeClock.settle()
        assert steps == list(range(30)) and task.done()

    asyncio.run(main())


def test_advance_settled_wakes_a_periodic_loop_at_each_of_its_deadlines() -> None:
    clock = FakeClock()

    async def main() -> None:
        woke_at = []

        async def every_ten_seconds() -> None:
            while True:
                await clock.wait(None, 10)
                woke_at.append(clock.monotonic() - 1000.0)

        loop_task = asyncio.create_task(every_ten_seconds())
        await clock.advance_settled(35)
        assert woke_at == [10.0, 20.0, 30.0]
        assert clock.monotonic() == 1035.0
        loop_task.cancel()

    asyncio.run(main())


def test_until_waiting_gives_up_after_its_real_timeout() -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError, match="expected 1"):
            await FakeClock().until_waiting(1, timeout=0.05)

    asyncio.run(main())


def test_stub_config_reads_dotted_paths_with_defaults() -> None:
    config = StubConfig({"history": {"max_age": "7d", "none": None}})
    assert config.get("history.max_age") == "7d"
    assert config.get("history.none", 5) is None
    assert config.get("history.max_age.deeper", 1) == 1
    assert config.get("memory.lease_time", "60s") == "60s"
