"""The memory backend passes the kernel's Store, Broker and AtomicSteps conformance suites."""

from __future__ import annotations

from typing import Any

import pytest

from sts_core.testing import AtomicStepsContract, BrokerContract, FakeClock, StoreContract, StubConfig
from sts_memory.backend import MemoryBackend, build_backend


def memory_config(settings: dict[str, Any]) -> StubConfig:
    """The config keys the memory backend reads, from the suites' settings."""
    return StubConfig(
        {
            "memory": {"lease_time": settings["lease_time"]},
            "history": {"max_runs_per_task": settings["max_runs_per_task"], "max_age": settings["max_age"]},
        }
    )


@pytest.fixture
def make_backend():
    def make(clock: FakeClock, settings: dict[str, Any]) -> MemoryBackend:
        return build_backend(memory_config(settings), clock)

    return make


class TestMemoryStore(StoreContract):
    pass


class TestMemoryBroker(BrokerContract):
    pass


class TestMemoryAtomicSteps(AtomicStepsContract):
    pass
