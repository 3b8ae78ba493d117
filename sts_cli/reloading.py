"""Reloading a task file into a running scheduler (``sts run`` on SIGHUP or with ``--watch``).

The file is the source of truth for the tasks it loaded: a reload adds the file's new tasks,
stores changed ones as a new version, leaves unchanged ones alone, and removes the tasks an
earlier load of the file brought in that the file no longer has. Tasks that came from
elsewhere (the Python API, the REST API, another file) are never removed. A file that is
rejected (invalid, unreadable, or dropping a task that a remaining task names as a parent)
changes nothing, and the error is logged.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import attrs

from sts_core.errors import Problem, STSError, TaskValidationError
from sts_core.task import Task
from sts_core.taskfile import validate_task_file

log = logging.getLogger("sts.reload")


@attrs.frozen
class ReloadSummary:
    """What a reload did, by task name."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    def describe(self) -> str:
        """``added 1 (b), changed 0, removed 1 (a), unchanged 2``."""
        parts = []
        for label in ("added", "changed", "removed", "unchanged"):
            names = getattr(self, label)
            shown = f" ({', '.join(names)})" if names and label != "unchanged" else ""
            parts.append(f"{label} {len(names)}{shown}")
        return ", ".join(parts)


class TaskFileReloader:
    """Keeps a scheduler's tasks in step with one task file.

    ``scheduler`` is a blocking ``TaskScheduler``; ``loaded`` the tasks its first load of
    ``path`` returned. Call ``reload()`` from the thread that owns the scheduler, and
    ``changed_on_disk()`` to poll the file (cheap: a ``stat``, and a read only when that moved).
    """

    def __init__(self, scheduler: Any, path: str | os.PathLike[str], loaded: list[Task]) -> None:
        self._scheduler = scheduler
        self.path = Path(path)
        self._names = {task.name for task in loaded}
        self._stat, self._digest = self._fingerprint()

    def changed_on_disk(self) -> bool:
        """True when the file's content differs from what was last loaded (or last seen)."""
        stat, digest = self._fingerprint(self._stat)
        if stat == self._stat:
            return False
        self._stat = stat
        if digest == self._digest:
            return False  # touched, or rewritten the same
        self._digest = digest
        return True

    def reload(self) -> ReloadSummary | None:
        """Apply the file: log and return what changed, or log why the file was rejected and
        return None (then every task stays as it was)."""
        self._stat, self._digest = self._fingerprint()
        try:
            summary = self._apply()
        except _AppliedInPart as exc:
            self._stat = self._digest = None  # --watch tries again at its next look
            log.error("task file %s applied in part: %s; the rest is tried again at the next change or SIGHUP",
                      self.path, exc)
            return None
        except STSError as exc:
            lines = exc.lines() if isinstance(exc, TaskValidationError) else [str(exc)]
            log.error("task file %s rejected, every task stays as it was:\n  %s", self.path, "\n  ".join(lines))
            return None
        log.info("reloaded task file %s: %s", self.path, summary.describe())
        return summary

    def _apply(self) -> ReloadSummary:
        scheduler = self._scheduler
        inner = scheduler.asyncio_scheduler
        before = {task.name: task for task in scheduler.list_tasks()}
        # Checked first, so that a file that cannot be applied in full changes nothing.
        tasks = validate_task_file(self.path, plugins=inner.plugins, resolve_function=inner.functions.resolve,
                                   existing=before, default_timezone=inner.engine.defaults.timezone)
        names = {task.name for task in tasks}
        removed = sorted(name for name in self._names - names if name in before)
        _check_no_children_left(removed, [*tasks, *(task for name, task in before.items() if name not in names)])
        stored = scheduler.add_tasks(tasks, replace=True)  # the file as validated: it is read once
        self._names = names | set(removed)
        for name in _children_first(removed, before):
            try:
                scheduler.delete_task(name)
            except STSError as exc:
                raise _AppliedInPart(f"its tasks are stored, but removing {name!r} failed: {exc}") from exc
            self._names.discard(name)
        return ReloadSummary(
            added=tuple(t.name for t in stored if t.name not in before),
            changed=tuple(t.name for t in stored if t.name in before and t.version != before[t.name].version),
            removed=tuple(removed),
            unchanged=tuple(t.name for t in stored if t.name in before and t.version == before[t.name].version),
        )

    def _fingerprint(self, known: Any = None) -> tuple[Any, str | None]:
        try:
            info = self.path.stat()
        except OSError:
            return None, None
        stat = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stat == known:
            return stat, self._digest
        try:
            return stat, hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None, None


class _AppliedInPart(STSError):
    """The file's tasks were stored but a task dropped from it could not be removed."""


def _check_no_children_left(removed: list[str], staying: list[Task]) -> None:
    gone = set(removed)
    problems = [
        Problem(task.name, f"names {', '.join(sorted(gone & set(task.parent_tasks)))} in parent_tasks, which the "
                "task file no longer has; change this task too")
        for task in staying if task.name not in gone and gone & set(task.parent_tasks)
    ]
    if problems:
        raise TaskValidationError(problems)


def _children_first(removed: list[str], tasks: dict[str, Task]) -> list[str]:
    """``removed`` ordered so that no task is removed before a removed task that names it as a parent."""
    left, order = set(removed), []
    while left:
        ready = sorted(name for name in left if not any(name in tasks[other].parent_tasks for other in left))
        if not ready:  # a cycle cannot be stored; keep going rather than loop for ever
            ready = sorted(left)
        order += ready
        left -= set(ready)
    return order
