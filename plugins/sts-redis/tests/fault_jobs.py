"""Task functions for the multi-process fault tests (``function: fault_jobs:record`` in a task file).

Every execution appends one row to a SQLite ledger kept outside STS (the path is in the
``FAULT_LEDGER`` environment variable) at the START of the function, so an execution whose
worker is killed midway still counts, and marks the row finished at the end. The tests count
executions, duplicates and losses from this ledger, independently of STS's own run records.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta

from sts.task import current_run

LEDGER_ENV = "FAULT_LEDGER"

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    fire_id TEXT,
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    scheduled_us INTEGER NOT NULL,
    started REAL NOT NULL,
    ended REAL
)
"""

_local = threading.local()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def connect(path: str) -> sqlite3.Connection:
    """A connection to the ledger at ``path`` (WAL, autocommit, waits up to 30 s for a lock)."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def create_ledger(path: str) -> None:
    """Create the ledger's table (the test does this before starting any process)."""
    conn = connect(path)
    try:
        conn.execute(SCHEMA)
    finally:
        conn.close()


def _ledger() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = connect(os.environ[LEDGER_ENV])
    return conn


def _begin() -> int:
    run = current_run()
    if run is None:
        raise RuntimeError("fault_jobs functions must run as STS tasks (current_run() is None)")
    scheduled_us = (run.scheduled_for - _EPOCH) // timedelta(microseconds=1)
    cursor = _ledger().execute(
        "INSERT INTO executions (task, fire_id, run_id, attempt, pid, scheduled_us, started) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (run.task_name, run.fire_id, run.id, run.attempt, os.getpid(), scheduled_us, time.time()),
    )
    return int(cursor.lastrowid or 0)


def _end(row: int) -> None:
    _ledger().execute("UPDATE executions SET ended = ? WHERE seq = ?", (time.time(), row))


def record(seconds: float = 0.0, jitter: float = 0.0) -> str:
    """Count this execution, sleep ``seconds`` (plus up to ``jitter`` more), count its end."""
    row = _begin()
    pause = seconds + (random.uniform(0.0, jitter) if jitter else 0.0)
    if pause > 0:
        time.sleep(pause)
    _end(row)
    return "ok"


def suicide(delay: float = 0.0) -> None:
    """Count this execution, then (after ``delay`` seconds) kill the worker process running it: a poison run."""
    _begin()
    if delay > 0:
        time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # not reached: SIGKILL cannot be caught
