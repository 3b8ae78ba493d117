"""Helpers for tests that run the ``sts`` command as a user does (in a new process)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from sts_core.testing import sts_command

TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}(?:Z|[+-]\d\d:\d\d)"


def clean_environment(**extra: str) -> dict[str, str]:
    """The caller's environment without STS_* settings (so a developer's own cannot leak in)."""
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith("STS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_sts(*args: str, cwd: Path, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``sts ARGS`` in ``cwd`` and return the finished process (output as text)."""
    return subprocess.run(
        [*sts_command(), *args], cwd=cwd, env=clean_environment(**env), capture_output=True, text=True,
        timeout=timeout,
    )


def summary_table(stdout: str) -> dict[str, dict[str, int]]:
    """The run summary printed at the end of ``sts run``: task -> state -> count."""
    assert "Run summary" in stdout, stdout
    lines = stdout.split("Run summary", 1)[1].strip().splitlines()
    header = [column.lower() for column in lines[0].split()]
    table = {}
    for line in lines[1:]:
        cells = line.split()
        if len(cells) != len(header):
            break
        table[cells[0]] = {column: int(cell) for column, cell in zip(header[1:], cells[1:], strict=True)}
    return table


def read_until(
    process: subprocess.Popen[str], needle: str, seen: list[str] | None = None, timeout: float = 20
) -> str:
    """Read ``process``'s stdout line by line until a line contains ``needle``; return what was
    read (also appended to ``seen``). Fails the test, showing the output, when it never comes."""
    seen = [] if seen is None else seen
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"{needle!r} not printed; got:\n{''.join(seen)}")
