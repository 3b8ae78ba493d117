"""Shared fixtures for the kernel and end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sts_core.config import Config
from sts_core.scheduler import AsyncTaskScheduler
from sts_core.testing import FakeClock


def quiet_config(**overrides: Any) -> Config:
    """The default config with logging at WARNING and the given top-level overrides."""
    data: dict[str, Any] = {"logging": {"loglevel": "WARNING"}}
    data.update(overrides)
    return Config(data)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2026-01-01T00:00:00Z."""
    return FakeClock()


@pytest.fixture
def make_scheduler(clock: FakeClock) -> Callable[..., AsyncTaskScheduler]:
    """Build an AsyncTaskScheduler on the memory backend and the fake clock."""

    def build(plugins: Any = None, **config: Any) -> AsyncTaskScheduler:
        return AsyncTaskScheduler(quiet_config(**config), clock=clock, plugins=plugins)

    return build
