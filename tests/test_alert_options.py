"""A task's ``alerts`` option: each key names an alerting plugin, which checks its value.

The kernel knows no alerting plugin: ``register_alert_options`` is how one says what a task
may tell it, and a task file that gets it wrong is rejected whole, with the key path.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sts_core.errors import TaskValidationError
from sts_core.hookspecs import hookimpl
from sts_core.plugins import PluginManager
from sts_core.task import Task


def job() -> None:
    """Does nothing."""


class Pager:
    """An alerting plugin taking ``alerts: {pager: {team: <name>}}`` or ``{pager: false}``."""

    teams = ("ops", "data")

    @hookimpl
    def register_alert_options(self, register: Any) -> None:
        register("pager", self.validate)

    def validate(self, value: Any) -> list[tuple[str, str]]:
        if value is False:
            return []
        if not isinstance(value, dict):
            return [("", f"expected false or a mapping with team, got {value!r}")]
        if value.get("team") not in self.teams:
            return [("team", f"unknown team {value.get('team')!r}; expected one of {', '.join(self.teams)}")]
        return []


class Broken:
    @hookimpl
    def register_alert_options(self, register: Any) -> None:
        register("broken", lambda value: 1 / 0)


def _scheduler(make_scheduler: Any, *plugins: tuple[str, object]) -> Any:
    return make_scheduler(plugins=PluginManager(plugins=list(plugins)))


def test_a_task_can_address_an_installed_alerting_plugin(make_scheduler) -> None:
    async def main() -> None:
        async with _scheduler(make_scheduler, ("pager", Pager())) as scheduler:
            stored = await scheduler.add_task(Task("t", job, every=60, alerts={"pager": {"team": "data"}}))
            silent = await scheduler.add_task(Task("quiet", job, every=60, alerts={"pager": False}))
        assert stored.alerts == {"pager": {"team": "data"}}
        assert silent.alerts == {"pager": False}
        assert Task.from_dict(stored.to_dict()).alerts == stored.alerts

    asyncio.run(main())


def test_an_unknown_alerting_plugin_is_rejected_with_a_did_you_mean(make_scheduler) -> None:
    async def main() -> None:
        async with _scheduler(make_scheduler, ("pager", Pager())) as scheduler:
            with pytest.raises(TaskValidationError) as caught:
                await scheduler.add_task(Task("t", job, every=60, alerts={"pagr": {"team": "ops"}}))
            assert await scheduler.list_tasks() == []
        assert "alerts.pagr: unknown alerting plugin 'pagr' (did you mean 'pager'?)" in caught.value.render()
        assert "installed: pager" in caught.value.render()

    asyncio.run(main())


def test_the_plugin_names_the_bad_key_under_alerts_and_nothing_is_stored(make_scheduler) -> None:
    async def main() -> None:
        async with _scheduler(make_scheduler, ("pager", Pager())) as scheduler:
            good = Task("good", job, every=60)
            bad = Task("bad", job, every=60, alerts={"pager": {"team": "sales"}})
            with pytest.raises(TaskValidationError) as caught:
                await scheduler.add_tasks([good, bad])
            assert await scheduler.list_tasks() == []
        assert "alerts.pager.team: unknown team 'sales'; expected one of ops, data" in caught.value.render()

    asyncio.run(main())


def test_alerts_without_any_alerting_plugin_say_none_is_installed(make_scheduler, monkeypatch) -> None:
    monkeypatch.setenv("STS_DISABLE_PLUGINS", "slack")  # the alerting plugin of this repository

    async def main() -> None:
        async with _scheduler(make_scheduler) as scheduler:
            with pytest.raises(TaskValidationError, match="installed: none"):
                await scheduler.add_task(Task("t", job, every=60, alerts={"slack": False}))

    asyncio.run(main())


def test_a_validator_that_raises_is_reported_with_its_plugin(make_scheduler) -> None:
    async def main() -> None:
        async with _scheduler(make_scheduler, ("broken", Broken())) as scheduler:
            with pytest.raises(TaskValidationError) as caught:
                await scheduler.add_task(Task("t", job, every=60, alerts={"broken": True}))
        assert "alerts.broken: plugin 'broken' failed to check it: ZeroDivisionError" in caught.value.render()

    asyncio.run(main())


def test_alerts_must_be_a_mapping_of_plugin_names() -> None:
    with pytest.raises(TaskValidationError, match="alerts: expected a mapping"):
        Task("t", job, alerts=["slack"])
