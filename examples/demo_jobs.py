"""Functions used by the demo task file ``configs/task.yaml``."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime

_attempts: dict[str, int] = {}


def heartbeat() -> str:
    """A quick interval task."""
    now = datetime.now().strftime("%H:%M:%S")
    print(f"heartbeat at {now}")
    return now


def hourly_report() -> dict[str, int]:
    """The cron task: pretend to build a report."""
    rows = random.randint(100, 999)
    print(f"report built with {rows} rows")
    return {"rows": rows}


def flaky(succeed_on: int = 3) -> str:
    """Fail until the ``succeed_on``-th call, then succeed (shows retries with backoff)."""
    count = _attempts["flaky"] = _attempts.get("flaky", 0) + 1
    if count < succeed_on:
        raise ConnectionError(f"upstream not ready (call {count} of {succeed_on})")
    return f"succeeded on call {count}"


async def slow(seconds: float = 30.0) -> None:
    """An async task that takes longer than its timeout (shows cancellation)."""
    await asyncio.sleep(seconds)


def extract() -> int:
    """The first step of a small pipeline."""
    print("extracted 42 records")
    return 42


def transform() -> str:
    """Runs only after extract succeeded."""
    print("transformed the records")
    return "ok"


def load_warehouse() -> None:
    """A step that fails for good: its dependent is skipped."""
    raise RuntimeError("warehouse is read-only today")


def publish() -> None:
    """Never runs in the demo: its parent fails."""
    print("published")
