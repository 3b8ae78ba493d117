"""What a task created or changed through the API may run: ``api.allowed_task_types``,
``api.allowed_functions`` and ``api.allowed_commands``.

Without such a list a token holder could store ``function: os:system`` or any shell command
and have the scheduler run it. The rules:

* the task's ``type`` must be listed in ``allowed_task_types`` (default: only ``python``);
* a python task's ``function`` (an import path or a registered name) must match one of the
  ``allowed_functions`` patterns (``fnmatch`` style, case-sensitive; empty: none is allowed).
  An import path must also name the callable where it is defined: ``pkg.jobs:run`` is refused
  when ``run`` was imported into ``pkg.jobs`` from another module, and so is a path that walks
  through a module (``pkg.jobs:os.system``), so that a pattern like ``pkg.jobs:*`` cannot be
  used to reach what ``pkg.jobs`` merely imports;
* a shell task's command must match one of the ``allowed_commands`` patterns, in which ``*``
  and ``?`` never match shell syntax (see ``command_matches``), and it may not set
  ``params.env`` (``PATH``, ``LD_PRELOAD`` or ``BASH_ENV`` would change what the command runs).
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import shlex
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from sts_core.errors import Problem
from sts_core.model import Task

#: Characters a wildcard in ``allowed_commands`` never matches: they are shell syntax.
SHELL_SYNTAX = ";&|<>`$()\\\n\r'\"{}*?[]~#!"


class Allowlist:
    """Checks tasks against the ``api`` section's allowlists."""

    def __init__(
        self,
        *,
        task_types: Sequence[str],
        functions: Sequence[str],
        commands: Sequence[str],
    ) -> None:
        self.task_types = tuple(task_types)
        self.functions = tuple(functions)
        self.commands = tuple(commands)
        self._command_patterns = [_command_regex(pattern) for pattern in self.commands]

    def problems(self, task: Task) -> list[Problem]:
        """Why ``task`` may not be stored through the API (empty: it may)."""
        if task.type not in self.task_types:
            allowed = ", ".join(self.task_types) or "none"
            return [Problem("type", f"task type {task.type!r} is not allowed through the API "
                                    f"(api.allowed_task_types: {allowed})")]
        problems = []
        if task.function is not None:
            problems.extend(self._function_problems(task.function))
        if task.command is not None:
            problems.extend(self._command_problems(task.command))
        if task.type == "shell" and "env" in task.params:
            problems.append(Problem("params.env", "not allowed through the API: environment variables such as "
                                                  "PATH, LD_PRELOAD or BASH_ENV change what an allowed command "
                                                  "runs; set them in a task file"))
        return problems

    def function_allowed(self, ref: str) -> bool:
        """True when ``ref`` matches an ``allowed_functions`` pattern."""
        return any(fnmatch.fnmatchcase(ref, pattern) for pattern in self.functions)

    def command_allowed(self, command: str | Sequence[str]) -> bool:
        """True when the command line matches an ``allowed_commands`` pattern."""
        text = command if isinstance(command, str) else shlex.join(command)
        return any(pattern.fullmatch(text) for pattern in self._command_patterns)

    def _function_problems(self, function: Any) -> list[Problem]:
        if not isinstance(function, str):
            return [Problem("function", "expected an import path 'package.module:function' or a registered name")]
        if not self.function_allowed(function):
            listed = ", ".join(self.functions) if self.functions else "empty: no function may be used"
            return [Problem("function", f"{function!r} is not allowed through the API: it matches none of "
                                        f"api.allowed_functions ({listed})")]
        if ":" in function:
            problem = defined_where_named(function)
            if problem is not None:
                return [Problem("function", problem)]
        return []

    def _command_problems(self, command: Any) -> list[Problem]:
        if self.command_allowed(command):
            return []
        text = command if isinstance(command, str) else shlex.join(command)
        listed = ", ".join(repr(c) for c in self.commands) if self.commands else "empty: no command may be used"
        shown = text if len(text) <= 200 else text[:197] + "..."
        return [Problem("command", f"{shown!r} is not allowed through the API: it matches none of "
                                   f"api.allowed_commands ({listed})")]


def defined_where_named(path: str) -> str | None:
    """Why the import path ``module:attr.attr`` does not name a callable defined in ``module``
    (None when it does, or when it cannot be imported: the task type reports that)."""
    module_name, _, attr_path = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - the task type's own check reports import problems
        return None
    for part in attr_path.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
        if isinstance(target, ModuleType):
            return (f"{path!r} reaches into module {target.__name__!r} through {module_name!r}; name a function "
                    f"defined in an allowed module instead")
    defined_in = getattr(target, "__module__", None)
    if defined_in != module_name:
        return (f"{path!r} is not defined in {module_name!r} (it comes from {defined_in or 'elsewhere'!r}); "
                f"the API accepts a function only by the module that defines it")
    return None


def _command_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` with ``*`` (any run) and ``?`` (one character) that never match shell syntax."""
    safe = "[^" + re.escape(SHELL_SYNTAX) + "]"
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(safe + "*")
        elif char == "?":
            parts.append(safe)
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)
