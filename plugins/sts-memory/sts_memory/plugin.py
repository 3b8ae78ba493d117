"""Hook implementations of the ``memory`` plugin: the backend and its config section."""

from __future__ import annotations

from sts.plugin import RegisterBackend, RegisterConfigSection, hookimpl
from sts_memory.backend import DEFAULTS, build_backend, validate_section


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    """Provide the ``memory`` backend."""
    register("memory", build_backend)


@hookimpl
def register_config_sections(register: RegisterConfigSection) -> None:
    """Provide the ``memory`` config section (``lease_time``)."""
    register("memory", dict(DEFAULTS), validate=validate_section)
