"""Build the backend a scheduler uses from the config: the ``scheduler_backend`` plugin's store
and broker, or its store with the broker the ``broker`` key names."""

from __future__ import annotations

from typing import Any

import attrs

from sts_core.errors import ConfigError, PluginError, Problem
from sts_core.interfaces import Backend, Broker, Store
from sts_core.steps import check_backend


@attrs.define
class ComposedBackend:
    """A backend's store with a broker from another plugin.

    It offers none of the backend's ``AtomicSteps``: those tie the store to the backend's own
    broker. The engine then stages runs in the store's ``Outbox``, or takes each step on its own
    (``sts_core.steps``).
    """

    store: Store
    broker: Broker


def build_backend(plugins: Any, config: Any, clock: Any) -> Backend:
    """The backend ``config`` asks for; raises ``ConfigError`` naming the key of an unknown name."""
    backend_name = config.get("scheduler_backend")
    try:
        factory = plugins.lookup("backend", backend_name).value
    except PluginError as exc:
        raise ConfigError([Problem("scheduler_backend", str(exc))], source=config.source) from None
    broker_name = config.get("broker")
    broker_factory = None
    if broker_name is not None:
        try:
            broker_factory = plugins.lookup("broker", broker_name).value
        except PluginError as exc:
            raise ConfigError([Problem("broker", str(exc))], source=config.source) from None
    backend = factory(config, clock)
    if broker_factory is None:
        return backend
    check_backend(backend)
    if not backend.store.shared:
        message = (f"broker {broker_name!r} needs a store that outlives the process, such as redis: "
                   f"runs it keeps queued across a restart would name tasks the {backend_name!r} store has "
                   f"forgotten (set scheduler_backend: redis, or broker: null)")
        raise ConfigError([Problem("broker", message)], source=config.source)
    composed = ComposedBackend(store=backend.store, broker=broker_factory(config, clock))
    check_backend(composed)
    return composed
