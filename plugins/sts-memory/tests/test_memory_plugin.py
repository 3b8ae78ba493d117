"""The plugin's hooks: the ``memory`` backend and config section, found through the plugin manager."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sts_memory.plugin
from sts.plugin import ConfigError
from sts_core.testing import FakeClock, StubConfig
from sts_memory.backend import MemoryBackend, validate_section


def test_the_plugin_registers_the_memory_backend_and_section(make_plugin_manager) -> None:
    manager = make_plugin_manager(("memory", sts_memory.plugin))
    factory = manager.lookup("backend", "memory").value
    backend = factory(StubConfig(), FakeClock())
    assert isinstance(backend, MemoryBackend)
    section = manager.config_sections()["memory"]
    assert section.value == {"lease_time": "60s"}
    assert section.extra["validate"] is validate_section


def test_the_factory_reads_lease_time_and_history_settings() -> None:
    from sts_memory.backend import build_backend

    config = StubConfig({"memory": {"lease_time": "2m"}, "history": {"max_runs_per_task": 5, "max_age": "7d"}})
    backend = build_backend(config, FakeClock())
    assert backend.broker._lease_time == 120.0
    assert backend.store._max_runs == 5
    assert backend.store._max_age.total_seconds() == 7 * 86400


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"memory": {"lease_time": "soon"}}, "memory.lease_time"),
        ({"memory": {"lease_time": 0}}, "memory.lease_time"),
        ({"history": {"max_runs_per_task": "many"}}, "history.max_runs_per_task"),
        ({"history": {"max_age": "a week"}}, "history.max_age"),
    ],
)
def test_an_invalid_setting_is_reported_with_its_key(data, key) -> None:
    from sts_memory.backend import build_backend

    with pytest.raises(ConfigError, match=key):
        build_backend(StubConfig(data), FakeClock())


def test_section_validation_names_bad_values_and_unknown_keys() -> None:
    assert validate_section({"lease_time": "30s"}) == []
    problems = dict(validate_section({"lease_time": "-1", "lease_tim": "30s"}))
    assert set(problems) == {"lease_time", "lease_tim"}
    assert "did you mean 'lease_time'" in problems["lease_tim"]


def test_the_memory_entry_point_is_installed() -> None:
    # A fresh interpreter: this process's distribution metadata may predate the install.
    code = (
        "from importlib.metadata import entry_points;"
        "print([ep.value for ep in entry_points(group='sts') if ep.name == 'memory'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['sts_memory.plugin']"
