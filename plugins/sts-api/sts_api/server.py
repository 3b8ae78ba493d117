"""The HTTP server: uvicorn serving the app on the scheduler's own event loop.

Handlers await the ``AsyncTaskScheduler`` directly, with no thread or second loop in between.
The socket is bound here, before uvicorn starts, so that an address in use is one clear error
(uvicorn would exit the process) and port 0 gives a known port at once. uvicorn's signal
handling is left out: the scheduler's process owns SIGINT and SIGTERM and stops the server
through ``scheduler_stopping``.

Against slow clients (slowloris): while no request is being served (before the first one, and
after each response) the next request's head must arrive within ``api.request_timeout`` of the
connection opening or of its first byte, else the connection is closed (uvicorn itself waits
for ever, and a byte now and then would keep it waiting); the body then has ``request_timeout``
again (``sts_api.bodies``, 408). An idle kept-alive connection is closed
after ``KEEP_ALIVE`` seconds, and at most ``api.max_connections`` connections are served at once
(uvicorn's ``limit_concurrency``: beyond it a request is answered 503, in plain text). A request
h11 cannot parse is answered 400 in JSON, like every other error, except one whose only fault is
a ``Content-Length`` too long for h11 (more than 20 digits): that body is over any limit, so it
is a 413 like every other body over ``api.max_body_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from sts.plugin import format_address
from sts_api.app import build_app
from sts_api.bodies import too_large
from sts_api.config import Settings
from sts_api.responses import ApiError, encode

log = logging.getLogger("sts.api")

#: How long ``stop`` lets requests in flight finish before closing their connections (seconds).
GRACEFUL_SHUTDOWN = 3.0
#: Seconds an idle kept-alive connection stays open (uvicorn's ``timeout_keep_alive``).
KEEP_ALIVE = 5
_BACKLOG = 128
#: A ``Content-Length`` header of more significant digits than h11 accepts (20): it is at least
#: 10**20 bytes, over any ``api.max_body_bytes``.
_HUGE_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*0*[1-9][0-9]{20,}[ \t]*\r\n", re.IGNORECASE)
#: How many of the latest bytes received while a request head is awaited are kept to look for one
#: (more than uvicorn lets a head have: 16 KiB).
_HEAD_KEPT = 65536


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without signal handlers of its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head and JSON for a malformed
    request. ``head_timeout`` and ``max_body_bytes`` are set per server (see ``_protocol``)."""

    head_timeout: float = 10.0
    max_body_bytes: int = 65536
    _head_timer: asyncio.TimerHandle | None = None
    _head: bytes = b""  # the latest bytes received while a request head was awaited

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        self._head = (self._head + data)[-_HEAD_KEPT:] if self.conn.their_state is h11.IDLE else b""
        super().data_received(data)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _waiting_for_head(self) -> bool:
        """True while no request is being served: before the first, and after each response (also
        while a client sends the rest of a body no handler reads)."""
        served = self.cycle is not None and not self.cycle.response_complete
        return not served and not self.transport.is_closing()

    def _watch_head(self) -> None:
        """Start the clock when a request's head is awaited, stop it once a request is served."""
        if not self._waiting_for_head():
            self._stop_head_timer()
        elif self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._waiting_for_head():
            self._stop_keep_alive()
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()

    def _stop_keep_alive(self) -> None:
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def send_400_response(self, msg: str) -> None:
        if _HUGE_LENGTH.search(self._head):
            self._send_error(too_large(self.max_body_bytes), b"Content Too Large")
        else:
            self._send_error(ApiError(400, "malformed_request", f"the request is not valid HTTP/1.1: {msg}"),
                             b"Bad Request")

    def _send_error(self, error: ApiError, reason: bytes) -> None:
        """Answer ``error`` in JSON and close the connection (h11 can read no further)."""
        body = encode(error.body())
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
        self.transport.write(self.conn.send(h11.Response(status_code=error.status, headers=headers, reason=reason)))
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()


def _protocol(settings: Settings) -> type[_Protocol]:
    return type("ApiProtocol", (_Protocol,), {"head_timeout": settings.request_timeout,
                                              "max_body_bytes": settings.max_body_bytes})


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
            self.app, lifespan="off", log_config=None, access_log=False, http=_protocol(self.settings),
            ws="none", server_header=False, timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN), backlog=_BACKLOG,
            timeout_keep_alive=KEEP_ALIVE, limit_concurrency=self.settings.max_connections,
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
