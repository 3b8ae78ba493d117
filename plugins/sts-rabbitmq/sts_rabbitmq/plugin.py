"""Hook implementations of the ``rabbitmq`` plugin: the broker and its config section."""

from __future__ import annotations

from sts.plugin import RegisterBroker, RegisterConfigSection, hookimpl
from sts_rabbitmq.settings import DEFAULTS, build_broker, validate_section


@hookimpl
def register_brokers(register: RegisterBroker) -> None:
    """Provide the ``rabbitmq`` broker (``broker: rabbitmq``)."""
    register("rabbitmq", build_broker)


@hookimpl
def register_config_sections(register: RegisterConfigSection) -> None:
    """Provide the ``rabbitmq`` config section (url, prefix, prefetch, ...)."""
    register("rabbitmq", dict(DEFAULTS), validate=validate_section)
