"""Task functions for the api plugin tests (``sts_api_jobs:...``; this folder is on sys.path)."""

from __future__ import annotations

import os  # noqa: F401 - the allowlist must refuse sts_api_jobs:os.system
import time
from subprocess import run  # noqa: F401 - the allowlist must refuse sts_api_jobs:run (defined elsewhere)


def noop() -> None:
    """Do nothing."""


def say(text: str = "hi") -> str:
    """Print ``text`` and return it."""
    print(text, flush=True)
    return text


def fail(message: str = "boom") -> None:
    """Print a line, then fail with ``ValueError(message)``."""
    print("about to fail", flush=True)
    raise ValueError(message)


def slow(seconds: float = 1.0) -> None:
    """Take ``seconds``."""
    time.sleep(seconds)


def collect(**values: object) -> dict[str, object]:
    """Take any keyword arguments and return them."""
    return values
