"""Test helpers shared by the sts-tasks tests (importable once ``conftest`` has put this directory on sys.path)."""

from __future__ import annotations

import os
import sys


class ListOutput:
    """A run's output buffer that keeps every write."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def process_state(pid: int) -> str | None:
    """The process's state letter from /proc (``Z`` for a zombie), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    if sys.platform.startswith("linux"):
        return process_state(pid) not in (None, "Z")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
