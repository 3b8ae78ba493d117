"""What a compiled plan keeps per task: the parts most tasks have alike are one shared object."""

from __future__ import annotations

import asyncio

import pytest

from sts_core.task import Task


async def noop() -> None:
    """A task function."""


def test_plans_share_one_empty_parents_set_and_one_settings_mapping_per_distinct_settings(make_scheduler) -> None:
    async def main() -> None:
        async with make_scheduler() as scheduler:
            await scheduler.add_tasks([
                Task("a", noop, every="1h"),
                Task("b", noop, every="1h"),
                Task("berlin", noop, every="1h", timezone="Europe/Berlin"),
                Task("child", noop, parent_tasks=["a"]),
            ])
            a, b, berlin, child = (scheduler.engine.plans.current(name) for name in ("a", "b", "berlin", "child"))
        assert a.parents is b.parents is berlin.parents == frozenset()
        assert child.parents == frozenset({"a"})
        assert a.settings is b.settings
        assert dict(berlin.settings) == {**a.settings, "timezone": "Europe/Berlin"}
        with pytest.raises(TypeError):
            a.settings["timezone"] = "Asia/Tokyo"  # shared, so nobody may change it

    asyncio.run(main())
