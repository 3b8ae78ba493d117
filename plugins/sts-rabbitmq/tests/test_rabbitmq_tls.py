"""``amqps://`` URLs: the broker talks TLS to a node that verifies nothing of ours, checks the
node's certificate against ``rabbitmq.ca_file``, and reports a certificate it cannot verify."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sts-redis" / "tests"))

from test_redis_tls import _certificates  # a throwaway CA and a certificate for 127.0.0.1

from sts.plugin import BackendUnavailableError, ConfigError, SystemClock
from sts_core.testing import StubConfig
from sts_core.testing.contracts import _run
from sts_rabbitmq.settings import build_broker
from sts_rabbitmq.testing import RabbitServer


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RabbitServer, Path]]:
    directory = tmp_path_factory.mktemp("tls")
    _certificates(directory)
    files = (str(directory / "ca.crt"), str(directory / "server.crt"), str(directory / "server.key"))
    with RabbitServer(tls=files) as server:
        yield server, directory


def _broker(server: RabbitServer, **options: Any) -> Any:
    url = f"amqps://guest:guest@127.0.0.1:{server.tls_port}/%2F"
    return build_broker(StubConfig({"rabbitmq": {"url": url, "prefix": "tls", "connect_timeout": "3s", **options}}),
                        SystemClock())


def test_runs_travel_over_tls_to_a_node_whose_certificate_the_ca_file_verifies(
    tls_node: tuple[RabbitServer, Path],
) -> None:
    server, directory = tls_node
    broker = _broker(server, ca_file=str(directory / "ca.crt"))

    async def main() -> None:
        await broker.open()
        try:
            run = _run("a", SystemClock().now())
            await broker.enqueue(run)
            delivery = await broker.consume(2)
            assert delivery is not None and delivery.run.id == run.id
            assert await broker.ack(delivery) is True
        finally:
            await broker.close()

    asyncio.run(main())


def test_a_certificate_the_ca_file_does_not_vouch_for_is_refused_with_the_reason(
    tls_node: tuple[RabbitServer, Path],
) -> None:
    server, directory = tls_node
    broker = _broker(server, ca_file=str(directory / "other-ca.crt"))

    async def main() -> None:
        with pytest.raises(BackendUnavailableError) as caught:
            await broker.open()
        message = str(caught.value)
        assert f"amqps://127.0.0.1:{server.tls_port}" in message and "CERTIFICATE_VERIFY_FAILED" in message, message
        assert "(self-signed certificate in certificate chain)" in message

    asyncio.run(main())


def test_a_ca_file_that_is_not_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"rabbitmq\.ca_file: not a usable CA certificate file"):
        build_broker(StubConfig({"rabbitmq": {"url": "amqps://h:5671/%2F", "ca_file": str(bogus)}}), SystemClock())
    with pytest.raises(ConfigError, match=r"rabbitmq\.ca_file: no such file"):
        build_broker(StubConfig({"rabbitmq": {"url": "amqps://h:5671/%2F", "ca_file": str(tmp_path / "none")}}),
                     SystemClock())


def test_a_key_that_does_not_match_the_certificate_names_cert_file(tls_node: tuple[RabbitServer, Path]) -> None:
    _, directory = tls_node
    section = {"url": "amqps://h:5671/%2F", "cert_file": str(directory / "server.crt"),
               "key_file": str(directory / "ca.key")}
    with pytest.raises(ConfigError, match=r"rabbitmq\.cert_file: the certificate and key_file cannot be used"):
        build_broker(StubConfig({"rabbitmq": section}), SystemClock())


def test_tls_files_with_a_plain_url_or_a_key_without_its_certificate_are_refused(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("x")
    with pytest.raises(ConfigError) as caught:
        build_broker(StubConfig({"rabbitmq": {"url": "amqp://h:5672/%2F", "ca_file": str(pem),
                                              "key_file": str(pem)}}), SystemClock())
    message = str(caught.value)
    assert "rabbitmq.ca_file: is used only with an amqps:// URL" in message
    assert "rabbitmq.key_file: is the key of cert_file, which is not set" in message
