"""Task files: a YAML or JSON mapping whose ``tasks:`` list holds task definitions.

A task file is applied all or nothing: every problem is collected, each naming the file,
the line and a key path such as ``tasks[2] (report).retries``, and raised together as one
``TaskValidationError``; no task is returned when anything is wrong. ``load_task_file``
checks the shape (parsing and each task's own options); ``validate_task_file`` adds the
checks that need plugins (``sts_core.validation.check_tasks``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import attrs

from sts_core.documents import Document, DocumentError, KeyPath, parse_json, parse_yaml
from sts_core.errors import Problem, TaskValidationError
from sts_core.plugins import PluginManager
from sts_core.task import Task, task_from_valid_options
from sts_core.validation import check_tasks, reported_already
from sts_core.wording import did_you_mean, short_repr, short_text

#: File suffixes and the syntax each one selects.
SYNTAX_BY_SUFFIX: dict[str, str] = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
TOP_LEVEL_KEYS: tuple[str, ...] = ("tasks",)
_DATE_KEYS = ("at", "start", "end")


def load_task_file(path: str | Path) -> list[Task]:
    """The tasks defined in the file at ``path``, checked for shape only (no plugins).

    Raises ``TaskValidationError`` (``source`` is the path) listing every problem: the file
    cannot be read or parsed, the layout is wrong, or a task has unknown or bad options.
    """
    loaded = _load(Path(path))
    loaded.raise_problems()
    return loaded.tasks


def validate_task_file(
    path: str | Path,
    *,
    plugins: PluginManager,
    resolve_function: Callable[[Any], Callable[..., Any]],
    existing: Mapping[str, Task] = {},
    default_timezone: str = "UTC",
) -> list[Task]:
    """The tasks of the file at ``path``, fully validated against ``plugins`` and ``existing``.

    Everything ``load_task_file`` checks plus everything ``check_tasks`` checks (trigger
    kinds and specs, task types, unknown parents, dependency cycles), all reported at once.
    """
    loaded = _load(Path(path))
    # Tasks that failed their own checks still count as names, so their children do not get
    # a second, misleading "unknown parent" problem.
    placeholders = {name: task for name in loaded.failed_names if (task := _placeholder(name)) is not None}
    candidates = [(index, task) for index, task in zip(loaded.indices, loaded.tasks, strict=True)
                  if index not in loaded.duplicate_indices]
    candidates += [(index, task) for index, task, _ in loaded.partial if index not in loaded.duplicate_indices]
    left_out = {index: keys for index, _, keys in loaded.partial}
    found = check_tasks(
        [task for _, task in candidates],
        plugins=plugins,
        resolve_function=resolve_function,
        existing={**existing, **placeholders},
        default_timezone=default_timezone,
    )
    for position, problem in found:
        index = candidates[position][0]
        if not reported_already(problem, left_out.get(index, frozenset())):
            loaded.add_task_problem(index, problem)
    loaded.raise_problems()
    return loaded.tasks


# --- the loaded file ------------------------------------------------------------------------------


@attrs.define
class _Loaded:
    """What a task file yielded so far: its tasks, their entry indices and every problem."""

    source: str
    document: Document
    tasks: list[Task] = attrs.field(factory=list)
    indices: list[int] = attrs.field(factory=list)
    names: dict[int, str] = attrs.field(factory=dict)
    failed_names: set[str] = attrs.field(factory=set)
    duplicate_indices: set[int] = attrs.field(factory=set)
    # refused entries built from their valid options (and the options left out), so the plugin
    # checks still run on the rest: every problem of a task is reported in one go
    partial: list[tuple[int, Task, frozenset[str]]] = attrs.field(factory=list)
    problems: list[Problem] = attrs.field(factory=list)

    def add(self, path: KeyPath, message: str, line: int | None = None) -> None:
        """Record a problem at ``path``; the line defaults to the nearest recorded one."""
        self.problems.append(Problem(self.render(path), message, line or self.document.line_of(path)))

    def add_task_problem(self, index: int, problem: Problem) -> None:
        """Record a problem whose key path is relative to entry ``index``."""
        self.add(("tasks", index, *_split_key_path(problem.key_path)), problem.message)

    def render(self, path: KeyPath) -> str:
        """``tasks[2] (report).retries`` for ``("tasks", 2, "retries")``."""
        text = ""
        for position, part in enumerate(path):
            if isinstance(part, int):
                text += f"[{part}]"
                if position == 1 and part in self.names:
                    text += f" ({short_text(self.names[part])})"
            else:
                text += f".{part}" if text else str(part)
        return text

    def raise_problems(self) -> None:
        """Raise every problem at once, in file order, if there is any."""
        if self.problems:
            self.problems.sort(key=lambda p: -1 if p.line is None else p.line)
            raise TaskValidationError(self.problems, source=self.source)


def _load(path: Path) -> _Loaded:
    source = str(path)
    document = _parse(path, source)
    loaded = _Loaded(source, document)
    entries = _task_entries(loaded)
    for index, entry in entries:
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            loaded.names[index] = entry["name"]
    for key_path, key, first_line, line in document.duplicate_keys:
        loaded.add(key_path, f"duplicate key {short_repr(key)} (first at line {first_line}); "
                             "each key may appear only once", line)
    _check_duplicate_names(loaded, entries)
    for index, entry in entries:
        if not isinstance(entry, Mapping):
            loaded.add(("tasks", index), f"expected a mapping of task options (name, function, every, ...), "
                                         f"got {_describe(entry)}")
            continue
        try:
            task = Task.from_dict(_with_datetimes(entry))
        except TaskValidationError as exc:
            for problem in exc.problems:
                loaded.add_task_problem(index, problem)
            partial, left_out = task_from_valid_options(_with_datetimes(entry))
            if partial is not None:
                loaded.partial.append((index, partial, left_out))
            elif index in loaded.names:
                loaded.failed_names.add(loaded.names[index])
            continue
        loaded.tasks.append(task)
        loaded.indices.append(index)
    return loaded


def _task_entries(loaded: _Loaded) -> list[tuple[int, Any]]:
    """The entries of the ``tasks:`` list, after checking the file's top level."""
    data = loaded.document.data
    if not isinstance(data, Mapping):
        loaded.add((), f"expected a mapping with a 'tasks:' list at the top level, got {_describe(data)}")
        return []
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            hint = did_you_mean(str(key), TOP_LEVEL_KEYS)
            loaded.add((short_text(str(key)),), f"unknown top-level key{hint}; a task file holds only a 'tasks:' list")
    if "tasks" not in data:
        loaded.add((), "missing 'tasks:': expected a list of task definitions under a top-level 'tasks:' key")
        return []
    tasks = data["tasks"]
    if not isinstance(tasks, list):
        hint = " (write 'tasks: []' for a file with no tasks)" if tasks is None else ""
        loaded.add(("tasks",), f"expected a list of task definitions, got {_describe(tasks)}{hint}")
        return []
    return list(enumerate(tasks))


def _check_duplicate_names(loaded: _Loaded, entries: list[tuple[int, Any]]) -> None:
    first: dict[str, int] = {}
    for index, _ in entries:
        name = loaded.names.get(index)
        if name is None:
            continue
        earlier = first.setdefault(name, index)
        if earlier != index:
            loaded.duplicate_indices.add(index)
            where = loaded.document.line_of(("tasks", earlier))
            loaded.add(("tasks", index, "name"),
                       f"duplicate task name {short_repr(name)}: already defined by tasks[{earlier}] (line {where})")


def _with_datetimes(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """YAML reads ``2026-12-01`` as a date; a task wants a date-time (midnight)."""
    if not any(type(entry.get(key)) is date for key in _DATE_KEYS):
        return entry
    fixed = dict(entry)
    for key in _DATE_KEYS:
        value = fixed.get(key)
        if type(value) is date:
            fixed[key] = datetime(value.year, value.month, value.day)
    return fixed


def _placeholder(name: str) -> Task | None:
    try:
        return Task(name)
    except TaskValidationError:
        return None


def _split_key_path(key_path: str) -> KeyPath:
    """``"trigger.kind"`` -> ``("trigger", "kind")``; ``"parent_tasks[1]"`` -> ``("parent_tasks", 1)``."""
    return tuple(int(index) if index else name for index, name in re.findall(r"\[(\d+)\]|([^.\[\]]+)", key_path))


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {short_repr(value, 40)}"
    return f"{type(value).__name__} {short_repr(value)}"


# --- reading and parsing ------------------------------------------------------------------------


def _fail(source: str, message: str, line: int | None = None) -> TaskValidationError:
    return TaskValidationError([Problem("", message, line)], source=source)


def _parse(path: Path, source: str) -> Document:
    text = _read_text(path, source)
    syntax = SYNTAX_BY_SUFFIX.get(path.suffix.lower())
    if syntax is None:
        raise _fail(source, f"unsupported file type {path.suffix or '(no suffix)'!r}; "
                            f"expected one of {', '.join(SYNTAX_BY_SUFFIX)}")
    if not text.strip():
        raise _fail(source, "the task file is empty; expected a mapping with a 'tasks:' list")
    try:
        document = parse_yaml(text) if syntax == "yaml" else parse_json(text)
    except DocumentError as exc:
        raise _fail(source, str(exc), exc.line) from None
    except RecursionError:
        raise _fail(source, "the file is nested too deeply to be a task file") from None
    if document.data is None:
        raise _fail(source, "the task file holds no data (only comments?); expected a mapping with a 'tasks:' list")
    return document


def _read_text(path: Path, source: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        # only task files are worth suggesting: jobs.py is no answer to a missing jobs.yaml
        siblings = [p.name for p in path.parent.iterdir() if p.suffix.lower() in SYNTAX_BY_SUFFIX] \
            if path.parent.is_dir() else []
        raise _fail(source, f"task file not found{did_you_mean(path.name, siblings)}") from None
    except IsADirectoryError:
        raise _fail(source, "is a directory; expected a .yaml, .yml or .json task file") from None
    except PermissionError:
        raise _fail(source, "cannot read the task file: permission denied") from None
    except OSError as exc:
        raise _fail(source, f"cannot read the task file: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _fail(source, f"not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot be decoded", line) from None
