"""The HTTP server: uvicorn serving the app on the scheduler's own event loop.

Handlers await the ``AsyncTaskScheduler`` directly, with no thread or second loop in between.
The socket is bound here, before uvicorn starts, so that an address in use is one clear error
(uvicorn would exit the process) and port 0 gives a known port at once. uvicorn's signal
handling is left out: the scheduler's process owns SIGINT and SIGTERM and stops the server
through ``scheduler_stopping``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from sts_api.app import build_app
from sts_api.config import Settings
from sts_core.sections import format_address

log = logging.getLogger("sts.api")

#: How long ``stop`` lets requests in flight finish before closing their connections (seconds).
GRACEFUL_SHUTDOWN = 3.0
_BACKLOG = 128


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without signal handlers of its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """Serves the REST API of ``scheduler`` at ``url`` between ``start`` and ``stop``."""

    def __init__(self, scheduler: Any, settings: Settings) -> None:
        self.settings = settings
        self.app = build_app(scheduler, settings)
        self._bound: tuple[str, int] | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (with port 0 configured: the port the system chose)."""
        return self._bound or (self.settings.host, self.settings.port)

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound address."""
        return f"http://{format_address(*self.address)}"

    async def start(self) -> None:
        """Bind and serve on the running loop; raises ``OSError`` when the address cannot be used."""
        sock = _bind(self.settings.host, self.settings.port)
        host, port = sock.getsockname()[:2]
        self._bound = (str(host), int(port))
        config = uvicorn.Config(
            self.app, lifespan="off", log_config=None, access_log=False, http="h11", ws="none",
            server_header=False, timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN), backlog=_BACKLOG,
        )
        server = _EmbeddedServer(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="sts-api")
        while not server.started:
            if self._task.done():
                sock.close()
                await self._task  # raises what stopped it
                raise OSError(f"the API server stopped while starting on {self.url}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting requests, let those in flight finish (bounded), free the port."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(task, GRACEFUL_SHUTDOWN + 2.0)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception:  # stopping must not fail the scheduler's stop
            log.exception("the API server failed while stopping")


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (a name is resolved; the first address is used)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
