"""Hook implementations of the ``redis`` plugin: the backend and its config section."""

from __future__ import annotations

from sts.plugin import RegisterBackend, RegisterConfigSection, hookimpl
from sts_redis.backend import DEFAULTS, build_backend, validate_section


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    """Provide the ``redis`` backend."""
    register("redis", build_backend)


@hookimpl
def register_config_sections(register: RegisterConfigSection) -> None:
    """Provide the ``redis`` config section (url, key_prefix, lease_time, ...)."""
    register("redis", dict(DEFAULTS), validate=validate_section)
