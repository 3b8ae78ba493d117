"""Turn a task's ``function`` (a callable, an import path or a registered name) into a callable."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from sts_core.errors import did_you_mean


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
            raise LookupError(f"expected a callable, an import path or a registered name, got {ref!r}")
        if ":" not in ref:
            try:
                return self._by_name[ref]
            except KeyError:
                hint = did_you_mean(ref, self._by_name)
                raise LookupError(
                    f"no function registered as {ref!r}{hint}; use an import path 'package.module:function' "
                    "or register it with scheduler.register_function()"
                ) from None
        return import_callable(ref)


def import_callable(path: str) -> Callable[..., Any]:
    """Import ``package.module:attr.attr``; raises ``LookupError`` naming what is missing."""
    module_name, _, attr_path = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise LookupError(f"cannot import module {module_name!r} for {path!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module raised while importing
        raise LookupError(f"importing module {module_name!r} for {path!r} raised {type(exc).__name__}: {exc}") from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            names = [n for n in dir(target) if not n.startswith("_")]
            raise LookupError(
                f"module {module_name!r} has no attribute {attr_path!r}{did_you_mean(part, names)}"
            ) from None
    if not callable(target):
        raise LookupError(f"{path!r} is not callable")
    return target
