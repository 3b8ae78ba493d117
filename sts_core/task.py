"""``Task``: a task definition (what runs, when, how failures are handled) and its checks.

Plain data (attrs). ``Task`` holds what every task has; the options of the trigger kinds and
task types (``every``, ``cron``, ``function``, ``command``, ...) are declared by their plugins
(``sts_core.options``). A task is validated when it is created, every option through the
installed plugins' declarations; the checks that need more context (does the trigger kind
accept the whole spec, can the function be imported, do the parents exist) happen when it is
added to a scheduler or a task file is validated.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

import attrs

from sts_core import converters
from sts_core.errors import Problem, TaskValidationError
from sts_core.options import TaskOptions, installed_options
from sts_core.wording import did_you_mean, short_repr, short_text

MISFIRE_POLICIES: tuple[str, ...] = ("coalesce", "skip", "run_all")

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}")
# Applied with fullmatch: "$" would also accept a trailing newline.


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            "expected a task name of letters, digits and _ . : - (1-200 characters, "
            f"not starting with punctuation), got {short_repr(value)}"
        )
    return value


def _type_name(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"expected a task type name such as 'python' or 'shell', got {short_repr(value)}")


#: The converter of every option the kernel's ``Task`` has (what every task has); the other
#: options are declared by plugins (``sts_core.options``).
CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "name": _name,
    "type": _type_name,
    "params": converters.mapping,
    "trigger": converters.optional_mapping,
    "timezone": converters.optional_timezone,
    "start": converters.optional_datetime,
    "end": converters.optional_datetime,
    "jitter": converters.optional_duration,
    "retries": converters.optional_int(0),
    "retry_delay": converters.optional_duration,
    "backoff": converters.optional_number(1.0),
    "max_retry_delay": converters.optional_duration,
    "retry_jitter": converters.optional_duration,
    "timeout": converters.optional_positive_duration,
    "parent_tasks": converters.str_tuple,
    "max_instances": converters.positive_int,
    "misfire": converters.choice(MISFIRE_POLICIES),
    "misfire_grace_time": converters.optional_duration,
    "enabled": converters.boolean,
    "tags": converters.str_tuple,
    "description": converters.optional_str,
    "alerts": converters.mapping,
}
#: The positional arguments of ``Task(...)``: the name, and the python task type's ``function``.
_POSITIONAL = ("name", "function")


_T = TypeVar("_T")


class _Rare(Generic[_T]):
    """A task option read from ``Task.rare`` (None when not set) rather than kept in a slot of its own."""

    __slots__ = ("name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, task: Task | None, owner: type | None = None) -> _T | None:
        if task is None:  # read on the class
            return self  # type: ignore[return-value]
        return task.rare.get(self.name)


@attrs.frozen(init=False, repr=False)
class Task:
    """A task definition: what runs, when, and how failures are handled.

    ``Task("report", function="reports:build", every="30s", retries=2)`` and a task-file
    entry with the same keys describe the same task. Options left as ``None`` take their
    value from the configuration (``retries``, ``retry_delay``, ``timezone``, ...).

    The fields below are what every task has. The other options (``function``, ``command``,
    ``every``, ``cron``, ...) are declared by the installed trigger and task-type plugins
    (``sts_core.options``), kept in ``options`` and read as attributes too (``task.every``).
    Every option is converted and checked at creation: raises ``TaskValidationError`` naming
    each bad option and what was expected, with a "did you mean" for an unknown one.
    """

    name: str
    type: str = "python"
    params: Mapping[str, Any] = converters.EMPTY_MAPPING
    start: datetime | None = None
    parent_tasks: tuple[str, ...] = ()
    max_instances: int = 1
    enabled: bool = True
    tags: tuple[str, ...] = ()
    #: What this task tells alerting plugins, by plugin: ``{"slack": {"webhook": "data-team"}}``.
    alerts: Mapping[str, Any] = converters.EMPTY_MAPPING
    version: int = 0
    #: The plugin-declared options given (converted), by name; those not given are left out.
    options: Mapping[str, Any] = converters.EMPTY_MAPPING
    #: The options below that are set (not None), by name: most tasks set none of them, and all
    #: such tasks share one empty mapping instead of a slot per option (8 bytes each, per task).
    rare: Mapping[str, Any] = converters.EMPTY_MAPPING

    trigger = _Rare[Mapping[str, Any]]()
    timezone = _Rare[str]()
    end = _Rare[datetime]()
    jitter = _Rare[float]()
    retries = _Rare[int]()
    retry_delay = _Rare[float]()
    backoff = _Rare[float]()
    max_retry_delay = _Rare[float]()
    retry_jitter = _Rare[float]()
    timeout = _Rare[float]()
    misfire = _Rare[str]()
    misfire_grace_time = _Rare[float]()
    description = _Rare[str]()

    def __init__(self, *args: Any, **given: Any) -> None:
        if len(args) > len(_POSITIONAL):
            raise TypeError(f"Task() takes at most {len(_POSITIONAL)} positional arguments ({len(args)} given)")
        for key, value in zip(_POSITIONAL, args, strict=False):
            if key in given:
                raise TypeError(f"Task() got multiple values for argument {key!r}")
            given[key] = value
        # ``attrs.evolve`` passes the options mapping back with the changed options beside it
        # (its undeclared options, those of a stored task, are kept unchecked: see from_stored).
        kept = given.pop("options", None) or {}
        for key, value in (given.pop("rare", None) or {}).items():  # ``attrs.evolve`` passes them back too
            given.setdefault(key, value)
        if "name" not in given:
            unknown = _unknown_key_problems(given, installed_options())
            if unknown:  # the more useful news
                raise TaskValidationError(unknown)
            raise TypeError("Task() missing 1 required argument: 'name'")
        values, options, problems = _convert(given, kept, installed_options())
        if problems:
            raise TaskValidationError(problems, source=_task_source(given.get("name")))
        rare = {key: value for key in RARE_TASK_KEYS if (value := values.pop(key, None)) is not None}
        self.__attrs_init__(  # type: ignore[attr-defined]
            **values, options=converters.compact(options), rare=converters.compact(rare)
        )

    def __repr__(self) -> str:
        # As attrs wrote it when every option had a slot: the options in their documented order.
        return f"Task({', '.join(f'{key}={getattr(self, key)!r}' for key in _ORDER)})"

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: the plugin-declared options.
        if name.startswith("__") or name in ("options", "rare"):
            raise AttributeError(name)
        options = self.options
        if name in options:
            return options[name]
        declared = installed_options().get(name)
        if declared is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r} "
                                 "(no installed plugin declares a task option of that name)")
        return declared.option.default

    def with_version(self, version: int) -> Task:
        """This definition stored as ``version`` (cheap: the options were validated already)."""
        stored = copy.copy(self)
        object.__setattr__(stored, "version", version)
        return stored

    # -- derived views --------------------------------------------------------------------

    @property
    def trigger_kind(self) -> str | None:
        """The trigger kind this task uses (``interval``, ``cron``, ...) or None."""
        key = self.trigger_option
        if key is None or key == "trigger":
            return None if self.trigger is None else str(self.trigger["kind"])
        return installed_options().trigger_kinds[key]

    @property
    def trigger_option(self) -> str | None:
        """The option this task's trigger is given by (``every``, ``cron``, ``trigger``, ...) or None."""
        if self.trigger is not None:
            return "trigger"
        kinds = installed_options().trigger_kinds
        return next((key for key in self.options if key in kinds), None)

    def trigger_spec(self) -> dict[str, Any] | None:
        """The plain-data description of the trigger handed to the trigger plugin: ``trigger``
        itself, or ``{"kind": <kind>, <option>: <value>}`` for a trigger option (``every: 30``)."""
        kind = self.trigger_kind
        if kind is None:
            return None
        if self.trigger is not None:
            spec = dict(self.trigger)
        else:
            kinds = installed_options().trigger_kinds
            spec = {"kind": kind, **{key: value for key, value in self.options.items() if kinds.get(key) == kind}}
        if self.start is not None:
            spec.setdefault("start", self.start)
        if self.end is not None:
            spec.setdefault("end", self.end)
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data with only the options that differ from their defaults.

        Raises ``TaskValidationError`` when an option cannot be stored outside this process
        (say the function is an anonymous callable: use an import path or a registered name).
        """
        data: dict[str, Any] = {"name": self.name}
        problems = []
        declared = installed_options()
        for key, value in self.options.items():
            option = declared.get(key)
            to_data = option.option.to_data if option is not None else None
            try:
                data[key] = _jsonable(to_data(value) if to_data is not None else value)
            except ValueError as exc:
                problems.append(Problem(key, str(exc)))
        if problems:
            raise TaskValidationError(problems, source=f"task {self.name!r}")
        for key, default in _STORED_DEFAULTS.items():
            value = getattr(self, key)
            if value != default:
                data[key] = _jsonable(value)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> Task:
        """Build a task from plain data (a task-file entry, a JSON body), reporting every
        unknown key (with a "did you mean") and every bad value at once."""
        problems = check_task_keys(data)
        known = {k: v for k, v in data.items() if k in task_keys()}
        try:
            task = cls(**known) if "name" in known else None
        except TaskValidationError as exc:
            problems.extend(exc.problems)
        if problems:
            raise TaskValidationError(problems, source=source)
        assert task is not None
        return task

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> Task:
        """A task from what a store holds (``to_dict`` data), which a process with other plugins
        may have written: the options no plugin of this process declares are kept as they are,
        unchecked (see ``undeclared_options``), so the task stays scheduled; the scheduler reports
        it as one it cannot fire or run here. Raises ``TaskValidationError`` for a bad value."""
        known = task_keys()
        task = cls(**{key: value for key, value in data.items() if key in known})
        undeclared = {key: value for key, value in data.items() if key not in known}
        if undeclared:
            object.__setattr__(task, "options", converters.compact({**task.options, **undeclared}))
        return task

    @property
    def undeclared_options(self) -> list[str]:
        """The options of a stored task that no plugin of this process declares (``from_stored``)."""
        declared = installed_options().names
        return [key for key in self.options if key not in declared]


def create_task(name: str, function: Callable[..., Any] | str | None = None, **options: Any) -> Task:
    """Create a task: ``create_task("report", "reports:build", every="1h")``."""
    return Task(name, function, **options)


#: Every option of the kernel's ``Task`` in its documented order (``repr``, ``to_dict``), then ``options``.
_ORDER: tuple[str, ...] = (
    "name", "type", "params", "trigger", "timezone", "start", "end", "jitter", "retries", "retry_delay",
    "backoff", "max_retry_delay", "retry_jitter", "timeout", "parent_tasks", "max_instances", "misfire",
    "misfire_grace_time", "enabled", "tags", "description", "alerts", "version", "options",
)
#: The options kept in ``Task.rare`` when set (None, their default, is not kept).
RARE_TASK_KEYS: tuple[str, ...] = tuple(key for key in _ORDER if isinstance(getattr(Task, key, None), _Rare))
_SLOT_DEFAULTS = {field.name: field.default for field in attrs.fields(Task)}
#: The default of each field ``to_dict`` writes when it differs (name: always, first; options: their own way).
_STORED_DEFAULTS: dict[str, Any] = {key: _SLOT_DEFAULTS.get(key) for key in _ORDER[1:-1]}
#: The options the kernel's ``Task`` has, besides ``options``, the plugins' options.
CORE_TASK_KEYS: frozenset[str] = frozenset(_ORDER[:-1])


def task_keys() -> frozenset[str]:
    """Every option a task may have here: the kernel's and those the installed plugins declare."""
    return CORE_TASK_KEYS | installed_options().names


def _convert(
    given: Mapping[str, Any], kept: Mapping[str, Any], declared: TaskOptions
) -> tuple[dict[str, Any], dict[str, Any], list[Problem]]:
    """The kernel's fields, the plugins' options, and every problem with ``given`` (unknown keys
    first, then bad values, then the cross-field problems among the valid values)."""
    problems = _unknown_key_problems(given, declared)
    failed: set[str] = set()
    values: dict[str, Any] = {}
    for key, convert in CONVERTERS.items():
        if key not in given:
            continue
        try:
            values[key] = convert(given[key])
        except ValueError as exc:
            problems.append(Problem(key, str(exc)))
            failed.add(key)
    if "version" in given:
        values["version"] = given["version"]
    options: dict[str, Any] = {}
    for key, value in {**kept, **{k: v for k, v in given.items() if k not in CORE_TASK_KEYS}}.items():
        item = declared.get(key)
        if value is None:
            continue  # not given
        if item is None:
            if key not in given:  # kept from a stored task that holds it unchecked (from_stored)
                options[key] = value
            continue  # else unknown: reported above
        try:
            converted = item.option.convert(value)
        except ValueError as exc:
            problems.append(Problem(key, str(exc)))
            failed.add(key)
            continue
        if converted != item.option.default:
            options[key] = converted
    # The cross-field checks run on the options that are valid, so every problem is reported at once.
    problems.extend(p for p in _cross_field_problems(values, options, declared) if p.key_path not in failed)
    return values, options, problems


def _cross_field_problems(
    values: Mapping[str, Any], options: Mapping[str, Any], declared: TaskOptions
) -> list[Problem]:
    problems: list[Problem] = []
    kinds = declared.trigger_kinds
    given = [key for key in options if key in kinds]
    if values.get("trigger") is not None:
        given.insert(0, "trigger")
    if len({kinds.get(key, key) for key in given}) > 1:
        problems.append(Problem(given[1], f"a task has at most one trigger; got {' and '.join(given)}"))
    trigger = values.get("trigger")
    if trigger is not None and not isinstance(trigger.get("kind"), str):
        problems.append(Problem("trigger.kind", "expected the name of a trigger kind"))
    elif trigger is not None:
        problems.extend(_trigger_option_problems(trigger, declared))
    start, end = values.get("start"), values.get("end")
    if start and end and _comparable(start) > _comparable(end):
        problems.append(Problem("end", "expected end after start"))
    parents = values.get("parent_tasks", ())
    if parents and given:
        problems.append(
            Problem(
                "parent_tasks",
                f"a task with parent_tasks runs when its parents succeed; remove {given[0]!r} "
                "(a task cannot have both a trigger and parents)",
            )
        )
    name = values.get("name")
    if isinstance(name, str) and name in parents:
        problems.append(Problem("parent_tasks", f"a task cannot be its own parent ({short_repr(name)})"))
    return problems


def _trigger_option_problems(trigger: Mapping[str, Any], declared: TaskOptions) -> list[Problem]:
    """``trigger: {kind: cron, cron: ...}``: the options its kind declares are checked as they are
    on their own (``cron: ...``); the rest of the spec is the trigger's, checked when it is built."""
    problems = []
    for key, value in trigger.items():
        item = declared.get(key) if isinstance(key, str) else None
        if item is None or item.role != "trigger" or item.owner != trigger["kind"] or value is None:
            continue
        try:
            item.option.convert(value)
        except ValueError as exc:
            problems.append(Problem(f"trigger.{key}", str(exc)))
    return problems


def check_task_keys(data: Mapping[str, Any]) -> list[Problem]:
    """Problems for keys that are not task options, each with a "did you mean"."""
    problems = _unknown_key_problems(data, installed_options())
    if "name" not in data:
        problems.append(Problem("name", "required: every task needs a name"))
    return problems


def task_from_valid_options(data: Mapping[str, Any]) -> tuple[Task | None, frozenset[str]]:
    """The task built from only the options of ``data`` that are valid, and the options left out.

    For the checks that need plugins (trigger, task type, parents): they run on this task while
    the options left out are reported, so one pass reports every problem. The task is None when
    even the valid options make no task (the name is missing or invalid).
    """
    known = task_keys()
    options = {key: value for key, value in data.items() if key in known}
    left_out: set[str] = {str(key) for key in data if key not in known}
    for _ in range(3):  # a cross-field problem can name an option only once another is left out
        if not isinstance(options.get("name"), str):
            break
        try:
            return Task(**options), frozenset(left_out)
        except TaskValidationError as exc:
            bad = {root_key(problem.key_path) for problem in exc.problems} & options.keys()
            if not bad or "name" in bad:
                break
            left_out |= bad
            options = {key: value for key, value in options.items() if key not in bad}
    return None, frozenset(left_out)


def _unknown_key_problems(data: Mapping[Any, Any], declared: TaskOptions) -> list[Problem]:
    known = CORE_TASK_KEYS | declared.names
    return [
        Problem(short_text(str(key)), f"unknown task option{did_you_mean(str(key), known)}")
        for key, value in data.items()
        # function=None: the positional argument left out, even when no plugin declares ``function``
        if key not in known and not (key == "function" and value is None)
    ]


def _task_source(name: Any) -> str | None:
    return f"task {short_repr(name)}" if isinstance(name, str) else None


def root_key(key_path: str) -> str:
    """``trigger.kind`` -> ``trigger``; ``parent_tasks[1]`` -> ``parent_tasks``."""
    return re.split(r"[.\[]", key_path, maxsplit=1)[0]



def _comparable(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo("UTC"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
