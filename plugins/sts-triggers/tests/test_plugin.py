"""The plugin registers the four kinds through the kernel's plugin manager."""

from datetime import UTC, datetime
from importlib import metadata
from zoneinfo import ZoneInfo

import sts_triggers.plugin
from sts.plugin import PluginManager, Task

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def manager() -> PluginManager:
    return PluginManager(entry_points=False, plugins=[("triggers", sts_triggers.plugin)])


def test_the_plugin_registers_interval_cron_date_and_delay():
    registry = manager().triggers()
    assert sorted(registry) == ["cron", "date", "delay", "interval"]
    assert {reg.plugin for reg in registry.values()} == {"triggers"}


def test_each_kind_builds_from_the_spec_a_task_produces():
    registry = manager().triggers()
    tasks = {
        "interval": Task("a", function="m:f", every="30s"),
        "cron": Task("b", function="m:f", cron="*/5 * * * *", timezone="Europe/Berlin"),
        "date": Task("c", function="m:f", at="2026-12-01T09:30:00+00:00"),
        "delay": Task("d", function="m:f", delay="10s"),
    }
    described = {}
    for kind, task in tasks.items():
        spec = task.trigger_spec()
        assert spec["kind"] == kind
        trigger = registry[kind].value(spec, ZoneInfo(task.timezone or "UTC"))
        assert trigger.first_fire(NOW) > NOW
        described[kind] = trigger.describe()
    assert described == {
        "interval": "every 30s",
        "cron": "cron */5 * * * * (Europe/Berlin)",
        "date": "at 2026-12-01 09:30 UTC",
        "delay": "after 10s",
    }


def test_start_and_end_from_the_task_reach_the_trigger():
    task = Task("e", function="m:f", cron="0 * * * *", start="2026-06-01T00:00:00", end="2026-06-01T02:00:00")
    trigger = manager().triggers()["cron"].value(task.trigger_spec(), ZoneInfo("UTC"))
    first = trigger.first_fire(NOW)
    assert first == datetime(2026, 6, 1, tzinfo=UTC)
    assert trigger.next_fire(trigger.next_fire(trigger.next_fire(first))) is None


def test_the_distribution_declares_the_entry_point():
    points = metadata.distribution("sts-triggers").entry_points
    assert [(ep.group, ep.name, ep.value) for ep in points] == [("sts", "triggers", "sts_triggers.plugin")]
