"""Tracebacks of failed runs that start where the task's own code starts.

A failure is read by the person who wrote the task: the frames of the engine and of the task
type that called the function (STS's own machinery) come first in a raw traceback and say
nothing to them, so those leading frames are left out. Chained exceptions keep theirs.
"""

from __future__ import annotations

import traceback
from collections.abc import Collection
from types import TracebackType


def task_traceback(error: BaseException, internal: Collection[str]) -> str:
    """The formatted traceback of ``error`` without its leading frames from the ``internal``
    modules (a name covers its submodules: ``sts_core`` is every kernel module). When every frame
    is internal (the failure is STS's own), the whole traceback is kept."""
    tb = error.__traceback__
    while tb is not None and _is_internal(_module_of(tb), internal):
        tb = tb.tb_next
    if tb is None:
        tb = error.__traceback__
    return "".join(traceback.format_exception(type(error), error, tb))


def _module_of(tb: TracebackType) -> str:
    return str(tb.tb_frame.f_globals.get("__name__") or "")


def _is_internal(module: str, internal: Collection[str]) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in internal)
