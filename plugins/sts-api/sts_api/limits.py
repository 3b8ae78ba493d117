"""Checks the API adds to the kernel's task validation, for values a task file would not
plausibly hold but a client (or a fuzzer) can send.

* ``name`` must match the name rule exactly: the kernel's check lets a trailing newline through,
  and such a name cannot appear in a URL or a header.
* Durations must be finite and at most ``MAX_DURATION`` (ten years): the kernel accepts
  ``jitter: 1e300`` or ``timeout: inf``, and a fire or retry that far away cannot be computed,
  which would unschedule the task at its first fire.
"""

from __future__ import annotations

import math
import re

from sts_core.errors import Problem
from sts_core.model import Task

#: The kernel's task name rule, matched in full.
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}")
#: The longest duration the API accepts, in seconds (ten years of 365.25 days).
MAX_DURATION = 315_576_000.0
DURATION_OPTIONS: tuple[str, ...] = (
    "every", "delay", "jitter", "retry_delay", "max_retry_delay", "retry_jitter", "timeout", "misfire_grace_time",
)


def limit_problems(task: Task) -> list[Problem]:
    """What the API refuses in ``task`` beyond the kernel's checks (empty: nothing)."""
    problems = []
    if not NAME.fullmatch(task.name):
        problems.append(Problem("name", "expected a task name of letters, digits and _ . : - (1-200 characters, "
                                        f"not starting with punctuation), got {task.name!r}"))
    for key in DURATION_OPTIONS:
        value = getattr(task, key)
        if value is not None and not (math.isfinite(value) and value <= MAX_DURATION):
            problems.append(Problem(key, f"expected a duration of at most ten years ({MAX_DURATION:.0f}s), "
                                         f"got {value!r}"))
    return problems
