"""Helpers for tests that start real server processes: free ports and children that die with
the test run. Standard library only."""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stable_free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host`` below the ephemeral range, for a server that must get the same
    port again after a restart: no outgoing connection is given a port from there meanwhile (one
    from ``free_port`` may go to a client reconnecting while the server is down)."""
    low = _ephemeral_low()
    if low - 1024 < 1000:  # the ephemeral range starts low: no room below it
        return free_port(host)
    for _ in range(200):
        port = random.randrange(max(low - 20_000, 1024), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    return free_port(host)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def die_with_parent_preexec() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` making the child get SIGKILL when this process dies, or None.

    This covers what ``atexit`` cannot: a test run that is itself killed. It is used only on Linux and
    only from the main thread, because the kernel ties the signal to the *thread* that started the child.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # The parent died before prctl took effect.
            os._exit(1)

    return preexec
