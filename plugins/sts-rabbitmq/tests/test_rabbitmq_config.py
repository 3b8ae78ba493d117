"""The example configuration and the plugin's registration."""

from __future__ import annotations

from pathlib import Path

from sts.config import Config
from sts.plugin import PluginManager
from sts_rabbitmq.broker import RabbitBroker
from sts_rabbitmq.settings import DEFAULTS, build_broker

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "rabbitmq.yaml"


def test_the_example_configuration_builds_a_broker_with_its_values(monkeypatch) -> None:
    monkeypatch.setenv("RABBITMQ_PASSWORD", "from-env")
    config = Config.from_yaml(EXAMPLE)
    config.validate_sections(PluginManager())
    assert (config.get("scheduler_backend"), config.get("broker")) == ("redis", "rabbitmq")
    broker = build_broker(config, None)
    assert isinstance(broker, RabbitBroker)
    assert broker.settings.prefix == "sts" and broker.settings.prefetch == config.get("executor.concurrency")
    assert broker.settings.url.endswith(":from-env@127.0.0.1:5672/%2F")
    assert "from-env" not in broker.settings.where and "from-env" not in repr(broker)


def test_the_plugin_registers_the_broker_and_its_section() -> None:
    manager = PluginManager()
    assert manager.lookup("broker", "rabbitmq").plugin == "rabbitmq"
    assert dict(manager.config_sections()["rabbitmq"].value) == DEFAULTS
    (info,) = [info for info in manager.plugin_infos() if info.name == "rabbitmq"]
    assert info.status == "enabled" and "brokers:rabbitmq" in info.provides
