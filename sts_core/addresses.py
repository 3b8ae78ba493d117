"""Network addresses in plugins' settings: the ``host:port`` a server listens on, and URLs in messages.

``parse_address`` reads a listen address, ``is_loopback`` says whether it reaches this machine
only, ``format_address`` writes one back; ``safe_url`` hides a URL's password for logs.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from sts_core.wording import short_repr

ADDRESS_EXPECTED = "expected host:port such as 127.0.0.1:8080 or [::1]:8080 (port 0 picks a free port)"


def parse_address(value: Any, expected: str = ADDRESS_EXPECTED) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"``) as ``(host, port)``; raises ``ValueError`` with ``expected``
    (what a valid value looks like, with the plugin's own example) and the value given."""
    if not isinstance(value, str):
        raise ValueError(f"{expected}; got {short_repr(value)}")
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address needs brackets to be told from its port
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{expected}; got {short_repr(value)}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True when ``host`` (a name or address, IPv6 without brackets) reaches this machine only."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def safe_url(url: str) -> str:
    """``url`` without its password, for messages and logs.

    Works on the text, not a parsed URL, so that a password holding ``/``, ``?`` or ``#``
    (which breaks URL parsing) is hidden too; a ``password=`` query parameter is hidden as well.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        authority_end = rest.rfind("@")
        if authority_end != -1:
            user, colon, _ = rest[:authority_end].partition(":")
            if colon:
                rest = f"{user}:***{rest[authority_end:]}"
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", f"{scheme}{sep}{rest}")
