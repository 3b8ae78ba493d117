"""Fixtures of the RabbitMQ plugin's tests: brokers on the session's node, each test under a name
prefix of its own whose queues and exchanges are deleted afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from sts_core.testing import StubConfig
from sts_rabbitmq.settings import build_broker
from sts_rabbitmq.testing import RabbitServer, delete_topology


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


@pytest.fixture
def make_broker(rabbitmq_server: RabbitServer, rabbit_prefixes: Callable[[], str]) -> Callable[..., Any]:
    """``make(clock, **rabbitmq_options)``: a broker (not yet open) on the session's node."""

    def make(clock: Any, **options: Any) -> Any:
        section = {"url": rabbitmq_server.url(), "prefix": rabbit_prefixes(), "connect_timeout": "5s", **options}
        return build_broker(StubConfig({"rabbitmq": section}), clock)

    return make


@pytest.fixture
def make_backend(make_broker: Callable[..., Any]) -> Callable[[Any, dict[str, Any]], Any]:
    """For the kernel's ``BrokerContract``: a broker with a store that does nothing."""

    def make(clock: Any, settings: dict[str, Any]) -> Any:
        return SimpleNamespace(store=_NoStore(), broker=make_broker(clock, lease_time=settings["lease_time"]))

    return make
