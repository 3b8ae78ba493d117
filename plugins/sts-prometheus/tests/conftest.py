"""Fixtures for the prometheus plugin tests: schedulers with the plugin on a free port."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sts.plugin import Config
from sts.scheduler import AsyncTaskScheduler
from sts_core.testing import FakeClock

# ``sts_prometheus_helpers`` is imported by name from the tests.
HELPERS_DIR = str(Path(__file__).parent)
if HELPERS_DIR not in sys.path:
    sys.path.insert(0, HELPERS_DIR)


def prometheus_config(**section: Any) -> Config:
    """A quiet config with the plugin enabled on a free loopback port, plus ``section``'s keys."""
    settings = {"enabled": True, "address": "127.0.0.1:0", "process_metrics": False, **section}
    return Config({"logging": {"loglevel": "WARNING"}, "prometheus": settings})


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2026-01-01T00:00:00Z."""
    return FakeClock()


@pytest.fixture
def make_scheduler(clock: FakeClock) -> Callable[..., AsyncTaskScheduler]:
    """``make_scheduler(**prometheus_keys)``: a memory-backend scheduler on the fake clock, plugin on."""

    def build(plugins: Any = None, **section: Any) -> AsyncTaskScheduler:
        return AsyncTaskScheduler(prometheus_config(**section), clock=clock, plugins=plugins)

    return build


