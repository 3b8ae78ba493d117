"""HTTP exposure: one small threaded server per scheduler serving its registry at ``/metrics``.

prometheus_client's WSGI app does the exposition (text format, OpenMetrics when asked, gzip,
``name[]`` filters); this module only binds, serves from a daemon thread and stops promptly.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from sts.plugin import format_address

#: The one path that serves metrics.
METRICS_PATH = "/metrics"
# How often serve_forever looks for a stop request (seconds): bounds how long stop() takes.
_POLL_INTERVAL = 0.05


class MetricsServer:
    """Serves ``registry`` at ``http://host:port/metrics`` until ``stop``.

    ``start`` raises ``OSError`` when it cannot listen (port in use, address not on this host).
    After it, ``address`` is the bound ``(host, port)``: with port 0, the port the system chose.
    """

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._bound: tuple[str, int] | None = None
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The address listened on (still after ``stop``; the configured one before ``start``)."""
        return self._bound or (self._host, self._port)

    @property
    def url(self) -> str:
        """``http://host:port/metrics`` of the bound address."""
        return f"http://{format_address(*self.address)}{METRICS_PATH}"

    def start(self) -> None:
        """Bind and serve from a daemon thread; raises ``OSError`` when binding fails."""
        server_class = _IPv6Server if ":" in self._host else _Server
        self._httpd = make_server(
            self._host, self._port, _only_metrics(make_wsgi_app(self._registry)),
            server_class=server_class, handler_class=_QuietHandler,
        )
        host, port = self._httpd.server_address[:2]
        self._bound = (str(host), int(port))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"sts-prometheus-{self.address[1]}", daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and free the port (blocks up to about ``_POLL_INTERVAL``, at most ``timeout``)."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds the process open


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = 10  # seconds: an idle or stalled connection does not hold its thread for ever

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


def _only_metrics(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """``app`` at ``/metrics``; 404 with a hint elsewhere."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in (METRICS_PATH, METRICS_PATH + "/"):
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"STS metrics are at {METRICS_PATH}\n".encode()]

    return serve
