"""Tracebacks of failed runs that start where the task's own code starts.

A failure is read by the person who wrote the task: the frames of the engine and of the task
type that called the function (STS's own machinery) come first in a raw traceback and say
nothing to them, so those leading frames are left out. Chained exceptions keep theirs.
"""

from __future__ import annotations

import traceback
from collections.abc import Collection
from types import TracebackType


def task_traceback(error: BaseException, internal_packages: Collection[str]) -> str:
    """The formatted traceback of ``error`` without its leading frames from ``internal_packages``
    (top-level package names). When every frame is internal (the failure is STS's own), the
    whole traceback is kept."""
    tb = error.__traceback__
    while tb is not None and _package_of(tb) in internal_packages:
        tb = tb.tb_next
    if tb is None:
        tb = error.__traceback__
    return "".join(traceback.format_exception(type(error), error, tb))


def _package_of(tb: TracebackType) -> str:
    module = tb.tb_frame.f_globals.get("__name__") or ""
    return str(module).partition(".")[0]
