"""Which ``Host`` headers the API answers: a defence against DNS rebinding.

A web page can make a browser send requests to ``http://attacker.example:8080``, and then point
that name at 127.0.0.1: the browser treats the answers as the attacker's origin, so the page can
read them (CORS does not apply: it is the same origin). The ``Host`` header still says
``attacker.example``, so checking it stops this. The rules:

* ``api.allowed_hosts`` set: only those names (``api.example.com``; ``*.example.com`` for its
  subdomains; ``*`` for any), with any port;
* not set, and the API listens on a loopback address: only ``localhost`` and loopback addresses
  (``127.0.0.1``, ``[::1]``), with any port;
* not set, on another address: any (put the API behind a proxy that checks, or set the list).

Anything else is answered 421 (JSON) before authentication or routing. A request without a
``Host`` header (HTTP/1.0) passes: browsers always send one.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from sts.plugin import is_loopback
from sts_api.responses import json_response


def host_name(header: str) -> str:
    """The host of a ``Host`` header without its port, lower case (IPv6 without brackets)."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    name, colon, port = text.rpartition(":")
    return name if colon and port.isdigit() else text


class HostCheck:
    """ASGI middleware answering 421 to requests whose ``Host`` is not allowed."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.allowed = tuple(pattern.lower().strip("[]") for pattern in allowed)

    def allows(self, header: str) -> bool:
        """True when the ``Host`` header ``header`` names an allowed host."""
        host = host_name(header).rstrip(".")
        if not self.allowed:
            return is_loopback(host)
        for pattern in self.allowed:
            if pattern == "*" or host == pattern:
                return True
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((value for name, value in scope["headers"] if name == b"host"), None)
            if header is not None and not self.allows(header.decode("latin-1")):
                shown = header.decode("latin-1")[:100]
                allowed = ", ".join(self.allowed) if self.allowed else "localhost and loopback addresses"
                response = json_response({"error": "misdirected_request",
                                          "message": f"this API does not answer for Host {shown!r} (allowed: "
                                                     f"{allowed}; see api.allowed_hosts)"}, 421)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_check_needed(bound_host: str, allowed: Sequence[str]) -> bool:
    """Whether to check ``Host`` at all: with ``allowed`` set, or when bound to loopback."""
    return bool(allowed) or is_loopback(bound_host)
