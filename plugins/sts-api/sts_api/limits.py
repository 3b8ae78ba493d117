"""Checks the API adds to the kernel's task validation, for values a task file would not
plausibly hold but a client (or a fuzzer) can send.

* ``name`` must match the name rule exactly: the kernel's check lets a trailing newline through,
  and such a name cannot appear in a URL or a header.
* Durations (also ``every`` and ``delay`` inside ``trigger``) must be finite and at most
  ``MAX_DURATION`` (ten years). The kernel refuses more than 100 years; the API's limit is
  stricter and checked first, on the raw values, so its message is the one given.
* ``backoff`` is at most ``MAX_BACKOFF``, ``retries`` at most ``MAX_RETRIES`` and
  ``max_instances`` at most ``MAX_INSTANCES``: larger values serve no schedule and only make
  the arithmetic on them overflow.
* ``at``, ``start`` and ``end`` (also inside ``trigger``) lie between the years ``MIN_YEAR`` and
  ``MAX_YEAR``: near the ends of what ``datetime`` holds, adding a jitter or converting a time
  zone overflows.
* A body with more than ``MAX_PROBLEMS`` unknown options is refused after the first
  ``MAX_PROBLEMS`` of them, without a "did you mean" for each of thousands of keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sts.plugin import Problem, Task, did_you_mean, duration_seconds, short_repr, short_text, task_keys
from sts_api.responses import MAX_PROBLEMS

#: The kernel's task name rule, matched in full.
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}")
#: The longest duration the API accepts, in seconds (ten years of 365.25 days).
MAX_DURATION = 315_576_000.0
MAX_BACKOFF = 100.0
MAX_RETRIES = 1000
MAX_INSTANCES = 10_000
MIN_YEAR = 1900
MAX_YEAR = 9000
DURATION_OPTIONS: tuple[str, ...] = (
    "every", "delay", "jitter", "retry_delay", "max_retry_delay", "retry_jitter", "timeout", "misfire_grace_time",
)
TRIGGER_DURATIONS: tuple[str, ...] = ("every", "delay")
DATETIME_OPTIONS: tuple[str, ...] = ("at", "start", "end")


def unknown_key_problems(data: Mapping[Any, Any]) -> list[Problem]:
    """The unknown options of ``data`` with a "did you mean", for at most ``MAX_PROBLEMS`` of them."""
    problems = []
    known = task_keys()
    for key in data:
        if key not in known:
            if len(problems) == MAX_PROBLEMS:
                break
            problems.append(Problem(short_text(str(key)), f"unknown task option{did_you_mean(str(key), known)}"))
    return problems


def count_unknown_keys(data: Mapping[Any, Any]) -> int:
    """How many keys of ``data`` are not task options (cheap: no "did you mean")."""
    known = task_keys()
    return sum(1 for key in data if key not in known)


def data_problems(data: Mapping[str, Any]) -> list[Problem]:
    """What the API refuses in the raw task data before the kernel reads it: durations over
    ten years and date-times out of range, also inside ``trigger``."""
    problems = [*_duration_problems(data, DURATION_OPTIONS, ""), *_datetime_problems(data, "")]
    trigger = data.get("trigger")
    if isinstance(trigger, Mapping):
        problems.extend(_duration_problems(trigger, TRIGGER_DURATIONS, "trigger."))
        problems.extend(_datetime_problems(trigger, "trigger."))
    return problems


def limit_problems(task: Task) -> list[Problem]:
    """What the API refuses in ``task`` beyond the kernel's checks (empty: nothing)."""
    problems = []
    if not NAME.fullmatch(task.name):
        problems.append(Problem("name", "expected a task name of letters, digits and _ . : - (1-200 characters, "
                                        f"not starting with punctuation), got {task.name!r}"))
    problems.extend(_duration_problems({key: getattr(task, key) for key in DURATION_OPTIONS}, DURATION_OPTIONS, ""))
    problems.extend(_datetime_problems({key: getattr(task, key) for key in DATETIME_OPTIONS}, ""))
    if task.backoff is not None and not task.backoff <= MAX_BACKOFF:
        problems.append(Problem("backoff", f"expected a number from 1 to {MAX_BACKOFF:g}, got {task.backoff!r}"))
    if task.retries is not None and task.retries > MAX_RETRIES:
        problems.append(Problem("retries", f"expected a whole number from 0 to {MAX_RETRIES}, "
                                           f"got {short_repr(task.retries)}"))
    if task.max_instances > MAX_INSTANCES:
        problems.append(Problem("max_instances", f"expected a whole number from 1 to {MAX_INSTANCES}, "
                                                 f"got {short_repr(task.max_instances)}"))
    return problems


def merged(first: Iterable[Problem], then: Iterable[Problem]) -> list[Problem]:
    """``first``, then the problems of ``then`` about other key paths (the API's message about a
    key replaces the kernel's)."""
    first = list(first)
    taken = {problem.key_path for problem in first}
    return first + [problem for problem in then if problem.key_path not in taken]


def _duration_problems(values: Mapping[str, Any], keys: Iterable[str], prefix: str) -> list[Problem]:
    problems = []
    for key in keys:
        value = values.get(key)
        seconds = duration_seconds(value)
        if seconds is not None and seconds > MAX_DURATION:  # also infinity; NaN and negatives: the kernel's
            problems.append(Problem(prefix + key, f"expected a duration of at most ten years ({MAX_DURATION:.0f}s), "
                                                  f"got {short_repr(value)}"))
    return problems


def _datetime_problems(values: Mapping[str, Any], prefix: str) -> list[Problem]:
    problems = []
    for key in DATETIME_OPTIONS:
        value = values.get(key)
        when = value
        if isinstance(value, str):
            try:
                when = datetime.fromisoformat(value.strip())
            except ValueError:
                continue  # not a date-time: the kernel (or the trigger) says what is expected
        if isinstance(when, datetime) and not MIN_YEAR <= when.year <= MAX_YEAR:
            shown = short_repr(value if isinstance(value, str) else when.isoformat())
            problems.append(Problem(prefix + key, f"expected a date-time between the years {MIN_YEAR} and {MAX_YEAR}, "
                                                  f"got {shown}"))
    return problems
