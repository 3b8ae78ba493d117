"""What a task created or changed through the API may run: ``api.allowed_task_types``,
``api.allowed_functions``, ``api.allowed_commands`` and ``api.allowed_cwds``.

Without such a list a token holder could store ``function: os:system`` or any shell command
and have the scheduler run it. The rules:

* the task's ``type`` must be listed in ``allowed_task_types`` (default: only ``python``);
* a python task's ``function`` must match one of the ``allowed_functions`` patterns
  (case-sensitive; empty: none is allowed), see ``FunctionPattern``:

  - a pattern without ``:`` matches only registered names (``cleanup``, ``clean_*``), never an
    import path;
  - a pattern with ``:`` matches only import paths. Its module part and its attribute part are
    matched separately, dot-separated segment by segment: ``*``, ``?`` and ``[...]`` stay
    within one segment (they never match ``.`` or ``:``), and a segment ``**`` matches any
    number of segments (zero included). ``myapp.jobs:*`` is every function of
    ``myapp.jobs``; ``reports.*:build_*`` the ``build_`` functions of each module directly
    below ``reports``; ``myapp.**:*`` every function of ``myapp`` and its submodules;
  - an attribute segment starting with ``__`` (``noop.__call__``, ``Job.__init__``) never
    matches;

  These checks are textual and come first: no module is imported for a function they refuse.
  Then the import path must name a plain function (``def`` or ``async def``, as
  ``inspect.isfunction`` says, nothing unwrapped) defined in the module it names
  (``__module__``): classes, instances, bound methods, builtins and ``functools.partial``
  objects are refused, and so is a function ``pkg.jobs`` merely imports (``pkg.jobs:run`` when
  ``run`` comes from ``subprocess``) or one reached through a module (``pkg.jobs:os.system``);
* a shell task's command must match one of the ``allowed_commands`` patterns, in which ``*``
  and ``?`` never match shell syntax (see ``command_matches``; a list is matched argument by
  argument), it may not set ``params.env`` (``PATH``, ``LD_PRELOAD`` or ``BASH_ENV`` would change
  what the command runs), and its ``params.cwd`` must be one of ``allowed_cwds`` (empty: no
  ``cwd`` may be set: a directory holding a ``Makefile`` or a script changes what ``make`` or
  ``./run.sh`` does).
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import re
import shlex
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from sts.plugin import Problem, Task, import_callable

#: Characters a wildcard in ``allowed_commands`` never matches: shell syntax, and NUL (which no
#: argument can hold).
SHELL_SYNTAX = ";&|<>`$()\\\n\r'\"{}*?[]~#!\x00"
#: A pattern segment that matches any number of dotted segments.
ANY_SEGMENTS = "**"


class FunctionPattern:
    """One ``allowed_functions`` pattern (see the module docstring for the rules)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.is_path = ":" in text
        module, _, attribute = text.partition(":")
        self._module = module.split(".")
        self._attribute = attribute.split(".")

    def matches(self, ref: str) -> bool:
        """True when the function reference ``ref`` (import path or registered name) matches."""
        if not self.is_path:
            return ":" not in ref and fnmatch.fnmatchcase(ref, self.text)
        if ref.count(":") != 1:
            return False
        module, _, attribute = ref.partition(":")
        parts = attribute.split(".")
        if any(part.startswith("__") for part in parts):
            return False
        return _segments_match(self._module, module.split(".")) and _segments_match(self._attribute, parts)


def _segments_match(patterns: Sequence[str], parts: Sequence[str]) -> bool:
    """Segment-wise ``fnmatch``: each pattern segment matches one segment (so ``*`` never crosses
    ``.``), except ``**``, which matches any number of segments."""
    # reachable[j]: the patterns so far can match exactly parts[:j]
    reachable = [True] + [False] * len(parts)
    for pattern in patterns:
        if pattern == ANY_SEGMENTS:
            for j in range(1, len(parts) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            reachable = [False] + [reachable[j] and fnmatch.fnmatchcase(parts[j], pattern) for j in range(len(parts))]
    return reachable[-1]


class Allowlist:
    """Checks tasks against the ``api`` section's allowlists."""

    def __init__(
        self,
        *,
        task_types: Sequence[str],
        functions: Sequence[str],
        commands: Sequence[str],
        cwds: Sequence[str] = (),
    ) -> None:
        self.task_types = tuple(task_types)
        self.functions = tuple(functions)
        self.commands = tuple(commands)
        self.cwds = tuple(cwds)
        self._function_patterns = [FunctionPattern(pattern) for pattern in self.functions]
        self._command_patterns = [_command_regex(pattern) for pattern in self.commands]
        self._argument_patterns = [_argument_regexes(pattern) for pattern in self.commands]
        self._cwds = {_directory(path) for path in self.cwds}

    def problems(self, task: Task) -> list[Problem]:
        """Why ``task`` may not be stored (or run) through the API (empty: it may)."""
        if task.type not in self.task_types:
            allowed = ", ".join(self.task_types) or "none"
            return [Problem("type", f"task type {task.type!r} is not allowed through the API "
                                    f"(api.allowed_task_types: {allowed})")]
        problems = []
        if task.function is not None:
            problems.extend(self._function_problems(task.function))
        if task.command is not None:
            problems.extend(self._command_problems(task.command))
        if task.type == "shell":
            problems.extend(self._shell_param_problems(task.params))
        return problems

    def function_allowed(self, ref: str) -> bool:
        """True when ``ref`` matches an ``allowed_functions`` pattern (textually: nothing is imported)."""
        return any(pattern.matches(ref) for pattern in self._function_patterns)

    def command_allowed(self, command: str | Sequence[str]) -> bool:
        """True when the command matches an ``allowed_commands`` pattern: a command line as a
        whole, a list of arguments argument by argument."""
        if isinstance(command, str):
            return any(pattern.fullmatch(command) for pattern in self._command_patterns)
        return any(_arguments_match(patterns, command) for patterns in self._argument_patterns)

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

    def _shell_param_problems(self, params: Any) -> list[Problem]:
        problems = []
        if "env" in params:
            problems.append(Problem("params.env", "not allowed through the API: environment variables such as "
                                                  "PATH, LD_PRELOAD or BASH_ENV change what an allowed command "
                                                  "runs; set them in a task file"))
        cwd = params.get("cwd")
        if cwd is not None and not (isinstance(cwd, str) and _directory(cwd) in self._cwds):
            listed = ", ".join(self.cwds) if self.cwds else "empty: no working directory may be set"
            shown = repr(cwd) if len(repr(cwd)) <= 200 else repr(cwd)[:197] + "..."
            problems.append(Problem("params.cwd", f"{shown} is not allowed through the API: the working directory "
                                                  f"changes what a command runs (a Makefile, ./script); it must be "
                                                  f"one of api.allowed_cwds ({listed})"))
        return problems


def defined_where_named(path: str) -> str | None:
    """Why the import path ``module:attr.attr`` does not name a plain function defined in
    ``module`` (None when it does). Imports the module: call it only for a path the patterns
    allowed."""
    module_name, _, attr_path = path.partition(":")
    try:
        target: Any = import_callable(path)  # the very import and lookup the scheduler does
    except LookupError as exc:
        return str(exc)
    walked: Any = importlib.import_module(module_name)  # imported by import_callable already
    for part in attr_path.split(".")[:-1]:
        walked = getattr(walked, part, None)
        if isinstance(walked, ModuleType):
            return (f"{path!r} reaches into module {walked.__name__!r} through {module_name!r}; name a function "
                    f"defined in an allowed module instead")
    if isinstance(target, ModuleType):  # not callable anyway, but say why
        return f"{path!r} is a module, not a function"
    if not inspect.isfunction(target):
        return (f"{path!r} is {_kind(target)}, not a plain function; the API runs only functions "
                f"(def or async def) defined in an allowed module, not classes, methods, builtins or other "
                f"callables")
    defined_in = getattr(target, "__module__", None)
    if defined_in != module_name:
        return (f"{path!r} is not defined in {module_name!r} (it comes from {defined_in or 'elsewhere'!r}); "
                f"the API accepts a function only by the module that defines it")
    return None


def _kind(target: Any) -> str:
    if inspect.isclass(target):
        return "a class"
    if inspect.ismethod(target):
        return "a bound method"
    if inspect.isbuiltin(target) or inspect.ismethoddescriptor(target) or type(target).__name__ == "method-wrapper":
        return "a builtin"
    return f"a {type(target).__name__} object"


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


def _argument_regexes(pattern: str) -> list[re.Pattern[str]] | None:
    """The pattern's words (split as the shell would), each a pattern for one argument; None
    when the pattern cannot be split (unbalanced quotes): it then matches no list."""
    try:
        words = shlex.split(pattern)
    except ValueError:
        return None
    return [_command_regex(word) for word in words]


def _arguments_match(patterns: list[re.Pattern[str]] | None, arguments: Sequence[str]) -> bool:
    if patterns is None or len(patterns) != len(arguments):
        return False
    return all(pattern.fullmatch(argument) for pattern, argument in zip(patterns, arguments, strict=True))


def _directory(path: str) -> str:
    """``path`` without trailing slashes (``/`` stays ``/``), for comparing directories."""
    return (path.rstrip("/") or "/") if path.startswith("/") else path
