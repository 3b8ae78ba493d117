"""The plugin registers the standard task types through the plugin manager."""

from __future__ import annotations

import sts_tasks.plugin
from sts.plugin import PluginManager
from sts_tasks import PythonTaskType, ShellTaskType


def test_the_plugin_registers_python_and_shell():
    registrations = PluginManager(entry_points=False, plugins=[("tasks", sts_tasks.plugin)]).task_types()
    assert sorted(registrations) == ["python", "shell"]
    assert isinstance(registrations["python"].value, PythonTaskType)
    assert isinstance(registrations["shell"].value, ShellTaskType)
    assert registrations["shell"].plugin == "tasks"


def test_the_plugin_is_found_through_its_entry_point():
    from importlib import metadata

    [entry_point] = [ep for ep in metadata.entry_points(group="sts") if ep.name == "tasks"]
    assert entry_point.value == "sts_tasks.plugin"
