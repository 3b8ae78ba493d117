"""Turn a task's ``function`` (a callable, an import path or a registered name) into a callable.

A user's module that fails to import is reported with the file and line that failed. Within
``import_errors_once()`` (one load of a batch of tasks) such a module is imported once: the
tasks after the first that use it get a short message instead of the same error again, and
the module's import-time code does not run once per task.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from sts_core.tracebacks import innermost_location, source_location
from sts_core.wording import did_you_mean, short_repr, short_text

#: Modules that failed to import in the current ``import_errors_once()`` block (None: no block).
_failed_imports: ContextVar[set[str] | None] = ContextVar("sts_failed_imports", default=None)


class FunctionRegistry:
    """Callables registered by name with a scheduler, plus import-path resolution."""

    def __init__(self) -> None:
        self._by_name: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, function: Callable[..., Any]) -> None:
        """Make ``function`` available to tasks as ``function: <name>``."""
        if not callable(function):
            raise TypeError(f"cannot register {name!r}: {function!r} is not callable")
        self._by_name[name] = function

    def names(self) -> list[str]:
        """The registered names."""
        return sorted(self._by_name)

    def resolve(self, ref: Any) -> Callable[..., Any]:
        """The callable for ``ref``; raises ``LookupError`` saying what could not be found."""
        if callable(ref):
            return ref
        if not isinstance(ref, str):
            raise LookupError(f"expected a callable, an import path or a registered name, got {short_repr(ref)}")
        if ":" not in ref:
            try:
                return self._by_name[ref]
            except KeyError:
                hint = did_you_mean(ref, self._by_name)
                raise LookupError(
                    f"no function registered as {short_repr(ref)}{hint}; use an import path 'package.module:function' "
                    "or register it with scheduler.register_function()"
                ) from None
        return import_callable(ref)


def import_callable(path: str) -> Callable[..., Any]:
    """Import ``package.module:attr.attr``; raises ``LookupError`` naming what is missing."""
    module_name, _, attr_path = path.partition(":")
    target: Any = _import_module(module_name, path)
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            names = [n for n in dir(target) if not n.startswith("_")]
            raise LookupError(
                f"module {short_repr(module_name)} has no attribute {short_repr(attr_path)}{did_you_mean(part, names)}"
            ) from None
    if not callable(target):
        raise LookupError(f"{short_repr(path)} is not callable")
    return target


@contextlib.contextmanager
def import_errors_once() -> Iterator[None]:
    """Within this block, a module that failed to import is not imported again: later references
    to it raise ``LookupError`` with a short message, so a batch of tasks reports each broken
    module once. Blocks nest (the outermost one counts)."""
    if _failed_imports.get() is not None:
        yield
        return
    token = _failed_imports.set(set())
    try:
        yield
    finally:
        _failed_imports.reset(token)


def _import_module(module_name: str, path: str) -> ModuleType:
    failed = _failed_imports.get()
    if failed is not None and module_name in failed:
        raise LookupError(
            f"module {short_repr(module_name)} for {short_repr(path)} failed to import: see the error reported for the "
            "first task that uses it"
        )
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module raised while importing
        if failed is not None:
            failed.add(module_name)
        raise LookupError(_import_failure(module_name, path, exc)) from None


def _import_failure(module_name: str, path: str, error: Exception) -> str:
    """What went wrong importing ``module_name`` (for ``path``), with the file and line that
    failed: a SyntaxError's own, else the innermost frame in the module's package."""
    if isinstance(error, ModuleNotFoundError) and error.name and _is_package_of(error.name, module_name):
        return f"cannot import module {short_repr(module_name)} for {short_repr(path)}: {short_text(str(error))}"
    if isinstance(error, SyntaxError):
        where = source_location(error.filename, error.lineno) if error.filename else None
        what = f"{type(error).__name__}: {short_text(str(error.msg))}"
    else:
        where = innermost_location(error, [module_name.partition(".")[0]])
        what = f"{type(error).__name__}: {short_text(str(error))}"
    return (f"importing module {short_repr(module_name)} for {short_repr(path)} failed"
            f"{f' at {where}' if where else ''}: {what}")


def _is_package_of(name: str, module_name: str) -> bool:
    return module_name == name or module_name.startswith(f"{name}.")
