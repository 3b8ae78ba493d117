"""The task options of the ``python`` and ``shell`` task types.

``python`` reads ``function``, ``args``, ``kwargs`` and ``executor``; ``shell`` reads
``command`` (and the kernel's ``params``). Each converter checks the value when the task is
created and raises ``ValueError`` with what was expected; which options a type needs, and
which it refuses, its ``validate`` says when the task is added.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sts.plugin import EXECUTORS, Option, converters, short_repr

_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")  # applied with fullmatch, unlike "$"


def function(value: Any) -> Callable[..., Any] | str:
    """A callable, an import path ``package.module:function`` or a registered name."""
    if callable(value):
        return value
    if isinstance(value, str):
        if ":" in value and not _IMPORT_PATH.fullmatch(value):
            raise ValueError(f"expected an import path 'package.module:function', got {short_repr(value)}")
        if not value:
            raise ValueError("expected a callable, an import path 'package.module:function' or a registered name")
        return value
    raise ValueError(
        f"expected a callable, an import path 'package.module:function' or a registered name, got {short_repr(value)}"
    )


def function_ref(value: Callable[..., Any] | str | None) -> str | None:
    """The function as an import path or registered name; None for an anonymous callable."""
    if value is None or isinstance(value, str):
        return value
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", "")
    if module and qualname and "<" not in qualname and module != "__main__":
        return f"{module}:{qualname}"
    return None


def function_data(value: Callable[..., Any] | str) -> str:
    """What a task stores of its function: the import path or registered name."""
    ref = function_ref(value)
    if ref is None:
        raise ValueError("an anonymous callable cannot be stored outside this process; "
                         "use an import path 'package.module:function' or a registered name")
    return ref


def command(value: Any) -> str | tuple[str, ...]:
    """A command line (text) or a non-empty list of arguments (kept as a tuple)."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"expected a command line (text) or a list of arguments, got {short_repr(value)}")


def arguments(value: Any) -> tuple[Any, ...]:
    """Positional arguments: a list or tuple (kept as a tuple)."""
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise ValueError(f"expected a list of positional arguments, got {short_repr(value)}")


FUNCTION = Option("function", function, to_data=function_data,
                  doc="python: the function to call: a callable, an import path 'package.module:function' "
                      "or a registered name")
ARGS = Option("args", arguments, default=(), doc="python: positional arguments for the function")
KWARGS = Option("kwargs", converters.mapping, default=converters.EMPTY_MAPPING,
                doc="python: keyword arguments for the function")
EXECUTOR = Option("executor", converters.choice(EXECUTORS),
                  doc="python: where a synchronous function runs, thread or process (default: executor.type)")
COMMAND = Option("command", command, doc="shell: the command line (run by /bin/sh) or a list of arguments")
