"""Test helpers shared by the sts-tasks tests (importable once ``conftest`` has put this directory on sys.path)."""

from __future__ import annotations

import asyncio
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


def time_out_after_first_output(task_type, context, timeout: float) -> None:
    """Execute until the run has written something, then cancel it ``timeout`` seconds later as
    the engine does at a timeout; raises ``TimeoutError``."""

    async def run_until_timeout() -> None:
        execution = asyncio.ensure_future(task_type.execute(context))
        while not context.output.text.strip():
            await asyncio.sleep(0.01)
        await asyncio.wait_for(execution, timeout)

    asyncio.run(run_until_timeout())
