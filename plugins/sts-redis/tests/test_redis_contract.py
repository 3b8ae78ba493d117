"""The Redis backend passes the kernel's Store, Broker and AtomicSteps conformance suites against a real
redis-server."""

from __future__ import annotations

from typing import Any

import pytest

from sts_core.testing import AtomicStepsContract, BrokerContract, StoreContract, StubConfig
from sts_redis.backend import build_backend


@pytest.fixture
def make_backend(redis_url: str) -> Any:
    prefixes = iter(range(1_000_000))

    def make(clock: Any, settings: dict[str, Any]) -> Any:
        config = StubConfig(
            {
                "redis": {"url": redis_url, "key_prefix": f"t{next(prefixes)}", "lease_time": settings["lease_time"]},
                "history": {"max_runs_per_task": settings["max_runs_per_task"], "max_age": settings["max_age"]},
            }
        )
        return build_backend(config, clock)

    return make


class TestRedisStore(StoreContract):
    pass


class TestRedisBroker(BrokerContract):
    pass


class TestRedisAtomicSteps(AtomicStepsContract):
    pass
