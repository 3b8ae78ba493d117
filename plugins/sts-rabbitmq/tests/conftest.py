"""Fixtures of the RabbitMQ plugin's tests: brokers on the session's node, each test under a name
prefix of its own whose queues and exchanges are deleted afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from sts.config import Config
from sts_core.testing import StubConfig
from sts_rabbitmq.settings import build_broker
from sts_rabbitmq.testing import RabbitServer, delete_topology, purge_topology


class _NoStore:
    """The broker suite needs only ``open``/``close`` of a store."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...


@pytest.fixture
def rabbit_prefixes(rabbitmq_server: RabbitServer) -> Iterator[Callable[[], str]]:
    """``new()`` gives a fresh name prefix; everything under the prefixes given is deleted afterwards."""
    given: list[str] = []

    def new() -> str:
        prefix = f"t{secrets.token_hex(4)}"
        given.append(prefix)
        return prefix

    yield new
    for prefix in given:
        delete_topology(rabbitmq_server, prefix)


@pytest.fixture(scope="session")
def _spare_prefixes(rabbitmq_server: RabbitServer) -> Iterator[list[str]]:
    """Prefixes whose queues exist and are empty: declaring a prefix's 34 quorum queues takes
    about 0.4 s, declaring them again 0.05 s. Deleted at the end of the session."""
    spare: list[str] = []
    yield spare
    for prefix in spare:
        delete_topology(rabbitmq_server, prefix)


@pytest.fixture
def make_broker(rabbitmq_server: RabbitServer, _spare_prefixes: list[str]) -> Iterator[Callable[..., Any]]:
    """``make(clock, **rabbitmq_options)``: a broker (not yet open) on the session's node, under
    a prefix no other test uses at the same time; its queues are emptied after the test."""
    used: list[str] = []
    throwaway: list[str] = []

    def make(clock: Any, **options: Any) -> Any:
        if "max_dead_letters" in options:  # queue arguments of its own: a prefix of its own, not reused
            prefix = f"t{secrets.token_hex(4)}"
            throwaway.append(prefix)
        else:
            prefix = _spare_prefixes.pop() if _spare_prefixes else f"t{secrets.token_hex(4)}"
            used.append(prefix)
        section = {"url": rabbitmq_server.url(), "prefix": prefix, "connect_timeout": "5s", **options}
        return build_broker(StubConfig({"rabbitmq": section}), clock)

    yield make
    for prefix in used:
        if purge_topology(rabbitmq_server, prefix):
            _spare_prefixes.append(prefix)
        else:
            delete_topology(rabbitmq_server, prefix)
    for prefix in throwaway:
        delete_topology(rabbitmq_server, prefix)


@pytest.fixture
def make_backend(make_broker: Callable[..., Any]) -> Callable[[Any, dict[str, Any]], Any]:
    """For the kernel's ``BrokerContract``: a broker with a store that does nothing."""

    def make(clock: Any, settings: dict[str, Any]) -> Any:
        return SimpleNamespace(store=_NoStore(), broker=make_broker(clock, lease_time=settings["lease_time"]))

    return make


@pytest.fixture
def make_config(redis_url: str, rabbitmq_server: RabbitServer,
                rabbit_prefixes: Callable[[], str]) -> Callable[..., Config]:
    """``make(**sections)``: a config with tasks in the shared Redis and runs through the shared
    RabbitMQ node, one prefix of each per test; ``sections`` are merged over it section by section."""
    prefix, redis_prefix = rabbit_prefixes(), f"e2e-{secrets.token_hex(3)}"

    def make(**sections: Any) -> Config:
        data: dict[str, Any] = {
            "scheduler_backend": "redis",
            "broker": "rabbitmq",
            "redis": {"url": redis_url, "key_prefix": redis_prefix},
            "rabbitmq": {"url": rabbitmq_server.url(), "prefix": prefix, "lease_time": "5s"},
            "scheduler": {"shutdown_grace": "1s"},
        }
        for key, value in sections.items():
            data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
        return Config(data)

    return make

