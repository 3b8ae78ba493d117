"""Task functions for the api plugin tests (``sts_api_jobs:...``; this folder is on sys.path)."""

from __future__ import annotations

import functools
import os  # noqa: F401 - the allowlist must refuse sts_api_jobs:os.system
import subprocess
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


async def later(value: int = 1) -> int:
    """A coroutine function: allowed like a plain one."""
    return value


# Callables that are not plain functions defined here: the allowlist refuses each.


class Shell(subprocess.Popen):
    """A class (callable, defined here) that runs whatever ``args`` says with ``shell=True``."""


class _Job:
    def go(self) -> int:
        return 1

    @classmethod
    def make(cls) -> _Job:
        return cls()

    @staticmethod
    def plain() -> int:
        return 2


bound = _Job().go
part = functools.partial(print, "x")
builtin = len
instance = _Job()
