"""Functions the tests run by import path (``sts_tasks_samples:add``), in this process and in children."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

events: dict[str, threading.Event] = {}


def add(a: int, b: int = 0) -> int:
    return a + b


async def async_add(a: int, b: int = 0) -> int:
    await asyncio.sleep(0)
    return a + b


def shout(text: str) -> str:
    print(f"out: {text}")
    print(f"err: {text}", file=sys.stderr)
    return text.upper()


async def async_shout(text: str, pause: float = 0.0) -> str:
    print(f"first {text}")
    await asyncio.sleep(pause)
    print(f"second {text}")
    return text


def thread_shout(text: str, pause: float) -> str:
    print(f"first {text}")
    time.sleep(pause)
    print(f"second {text}")
    return text


def fail(message: str) -> None:
    raise ValueError(message)


def returns_set() -> set[int]:
    return {1, 2}


def print_pid_and_sleep(seconds: float) -> None:
    print(os.getpid(), flush=True)
    time.sleep(seconds)


def start_grandchild_and_sleep(seconds: float) -> None:
    child = subprocess.Popen(["sleep", str(seconds)])
    print(os.getpid(), child.pid, flush=True)
    time.sleep(seconds)


def exit_hard(status: int) -> None:
    os._exit(status)


def wait_for_event(name: str) -> str:
    """Block the calling thread until the test sets ``events[name]`` (5 s at most)."""
    events[name].wait(5)
    print(f"late output from {name}")
    events[name + ":done"].set()
    return "late"
