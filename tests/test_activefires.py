"""ActiveFires: the fires dispatched here and not over, per task, and ``idle`` once there are none."""

from __future__ import annotations

import asyncio

from sts_core.activefires import ActiveFires
from sts_core.run import Run
from sts_core.testing import FakeClock


def _run(fire: str) -> Run:
    return Run(id=f"r-{fire}", task_name="a", task_version=1, scheduled_for=FakeClock().now(), fire_id=fire)


def test_idle_follows_the_fires_of_a_task_with_one_or_several_active() -> None:
    async def main() -> list[bool]:
        active = ActiveFires(store=None, retrying=lambda what, step: step())
        active.bind_to_loop()
        seen = [active.idle.is_set()]
        active.started("a", "a@1")
        active.started("a", "a@1")  # the same fire twice counts once
        seen.append(active.idle.is_set())
        active.forget(_run("a@1"))
        seen.append(active.idle.is_set())
        active.started("a", "a@1")
        active.started("a", "a@2")
        active.forget(_run("a@2"))
        seen.append(active.idle.is_set())
        active.forget(_run("never"))
        seen.append(active.idle.is_set())
        active.forget(_run("a@1"))
        seen.append(active.idle.is_set())
        return seen

    assert asyncio.run(main()) == [True, False, True, False, False, True]
