"""Hook implementations of the ``api`` plugin.

``scheduler_started`` serves the REST API of each scheduler whose config says
``api.enabled: true`` (``sts run --api`` and ``sts api`` set it); ``scheduler_stopping`` stops it
before the scheduler drains its runs. ``sts api`` is the command for a process that serves only
the API over a shared backend. The servers are kept by the ``ApiPlugin`` instance of the
scheduler's plugin manager, never in a module global.
"""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING, Any

from sts.plugin import RegisterCommand, RegisterConfigSection, hookimpl
from sts_api.command import add_arguments, cmd_api
from sts_api.config import DEFAULTS, Settings, validate_section

if TYPE_CHECKING:
    from sts_api.server import ApiServer

log = logging.getLogger("sts.api")


def server_for(scheduler: Any) -> ApiServer | None:
    """The running API server of ``scheduler`` (``.url``, ``.address``), or None when the API is
    not enabled for it, could not listen, or is stopped."""
    plugin = scheduler.plugins.instance_of(ApiPlugin)
    return plugin.server(scheduler.id) if plugin is not None else None


class ApiPlugin:
    """The ``api`` plugin. The entry point names this class, so each plugin manager (each
    scheduler, by default) has its own instance; schedulers sharing a manager each have their
    own server in it, by scheduler id."""

    def __init__(self) -> None:
        self._servers: dict[str, ApiServer] = {}

    def server(self, scheduler_id: str) -> ApiServer | None:
        """The running server of the scheduler with this id, or None."""
        return self._servers.get(scheduler_id)

    @hookimpl
    def register_config_sections(self, register: RegisterConfigSection) -> None:
        """Provide the ``api`` section (enabled, address, tokens, limits, CORS, allowlists)."""
        register("api", dict(DEFAULTS), validate=validate_section)

    @hookimpl
    def register_commands(self, register: RegisterCommand) -> None:
        """Provide ``sts api``: serve the REST API over a shared backend, without running tasks."""
        register("api", "serve the REST API over a shared backend such as redis (with memory: sts run --api)",
                 add_arguments=add_arguments, handler=cmd_api)

    @hookimpl
    async def scheduler_started(self, scheduler: Any) -> None:
        """Serve the API when ``api.enabled``; an address that cannot be used is logged, not raised."""
        settings = Settings.from_config(scheduler.config)
        if not settings.enabled or scheduler.id in self._servers:
            return
        from sts_api.server import ApiServer  # uvicorn and starlette: only when a server starts

        server = ApiServer(scheduler, settings)
        try:
            await server.start()
        except OSError as exc:
            log.error("%s", _bind_error(settings.address, exc))
            return
        self._servers[scheduler.id] = server
        log.info("REST API at %s (api.address %s, %d token(s))", server.url, settings.address, len(settings.tokens))

    @hookimpl
    async def scheduler_stopping(self, scheduler: Any) -> None:
        """Stop serving before the scheduler drains its runs; the port is free afterwards."""
        server = self._servers.pop(scheduler.id, None)
        if server is not None:
            await server.stop()


def _bind_error(address: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        why = "the port is already in use (another sts process?)"
    else:
        why = exc.strerror or str(exc)
    return (f"api.address {address}: cannot serve the REST API there: {why}. This process runs on without it; "
            f"choose another address, e.g. STS_API__ADDRESS=127.0.0.1:8081")
