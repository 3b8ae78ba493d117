"""Tracebacks and source locations that point at the user's (or a plugin's) own code.

A failure is read by the person who wrote the task or the plugin: the frames of the engine and
of the task type that called the function (STS's own machinery) come first in a raw traceback
and say nothing to them, so those leading frames are left out. Chained exceptions keep theirs.
A one-line message names the innermost frame in their code as ``file:line``.
"""

from __future__ import annotations

import os
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


def innermost_location(error: BaseException, modules: Collection[str]) -> str | None:
    """``file:line`` of the innermost frame of ``error``'s traceback that runs code of one of
    ``modules`` (a name covers its submodules), or None when no frame does."""
    found = None
    for frame, line in traceback.walk_tb(error.__traceback__):
        if _is_internal(str(frame.f_globals.get("__name__") or ""), modules):
            found = (frame.f_code.co_filename, line)
    return None if found is None else source_location(*found)


def source_location(filename: str, line: int | None) -> str:
    """``file:line``, the file relative to the working directory when it lies below it."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        relative = filename
    shown = filename if relative.startswith("..") else relative
    return shown if line is None else f"{shown}:{line}"


def _module_of(tb: TracebackType) -> str:
    return str(tb.tb_frame.f_globals.get("__name__") or "")


def _is_internal(module: str, internal: Collection[str]) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in internal)
