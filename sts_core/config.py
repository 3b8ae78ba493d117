"""Configuration: packaged defaults, a YAML or JSON file, ``${VAR}`` references and ``STS_*`` overrides.

A ``Config`` is resolved in four steps (``sts_core/default.yaml`` documents each for users):

1. the packaged defaults are deep-merged with the user's data (a file or a mapping);
2. ``${VAR}`` and ``${VAR:-fallback}`` in text values are replaced from the environment;
3. ``STS_<KEY>`` and ``STS_<SECTION>__<KEY>`` environment variables override existing keys;
4. every core key is validated; ``validate_sections`` adds the plugins' sections.

``save_config`` writes the data of step 1, so values from the environment (secrets) never
land in a file. Every problem names the file, the line, the key path and what was expected.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import yaml

from sts_core.durations import parse_duration
from sts_core.errors import ConfigError, Problem, did_you_mean, one_of
from sts_core.model import EXECUTORS, MISFIRE_POLICIES, check_timezone

if TYPE_CHECKING:
    from sts_core.plugins import PluginManager

log = logging.getLogger("sts.config")

DEFAULTS_FILE = "default.yaml"
ENV_PREFIX = "STS_"
ENV_SEPARATOR = "__"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_OUTPUTS = ("stdout", "stderr", "file")
LOG_FORMATS = ("text", "json")
YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIXES = (".json",)

_MISSING = object()

# --- rules for the core keys --------------------------------------------------------------------

Check = Callable[[Any], str | None]
"""A rule for one key: returns None when the value is valid, else what was expected."""
_NUMERIC_CHECKS: set[Check] = set()  # rules a ${...} reference (always text) can never satisfy


def _expected(expectation: str, value: Any) -> str:
    return f"expected {expectation}, got {value!r}"


def _whole(minimum: int, *, optional: bool = False) -> Check:
    expectation = f"a whole number >= {minimum}" + (", or null" if optional else "")

    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return None
        return _expected(expectation, value)

    _NUMERIC_CHECKS.add(check)
    return check


def _number(minimum: float) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum:
            return None
        return _expected(f"a number >= {minimum}", value)

    _NUMERIC_CHECKS.add(check)
    return check


def _duration(*, optional: bool = False, positive: bool = False) -> Check:
    expectation = "a duration " + ("greater than zero " if positive else "") + "such as 30s, 5m or 1h30m"
    expectation += ", or null" if optional else ""

    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError:
            return _expected(expectation, value)
        return _expected(expectation, value) if positive and seconds == 0 else None

    return check


def _choice(choices: tuple[str, ...], *, any_case: bool = False) -> Check:
    def check(value: Any) -> str | None:
        candidate = value.upper() if any_case and isinstance(value, str) else value
        if candidate in choices:
            return None
        return _expected(f"one of {', '.join(choices)}", value) + did_you_mean(str(candidate), choices)

    return check


def _text(example: str) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and value.strip():
            return None
        return _expected(example, value)

    return check


def _names(value: Any) -> str | None:
    if value is None or (isinstance(value, list) and all(isinstance(item, str) for item in value)):
        return None
    return _expected("a list of plugin names such as [slack, redis]", value)


def _timezone(value: Any) -> str | None:
    if not isinstance(value, str):
        return _expected("an IANA time zone name such as UTC or Europe/Berlin", value)
    try:
        check_timezone(value)
    except ValueError as exc:
        return str(exc)
    return None


#: The rule of every core key, by key path. ``default.yaml`` holds exactly these keys.
CORE_RULES: dict[str, Check] = {
    "scheduler_backend": _text("a backend name such as memory or redis"),
    "timezone": _timezone,
    "retries": _whole(0),
    "retry_delay": _duration(),
    "backoff": _number(1.0),
    "max_retry_delay": _duration(),
    "retry_jitter": _duration(),
    "timeout": _duration(optional=True, positive=True),
    "misfire": _choice(MISFIRE_POLICIES),
    "misfire_grace_time": _duration(),
    "executor.type": _choice(EXECUTORS),
    "executor.max_workers": _whole(1),
    "executor.concurrency": _whole(1),
    "executor.kill_grace": _duration(),
    "executor.output_limit": _whole(0),
    "scheduler.shutdown_grace": _duration(),
    "scheduler.max_batch": _whole(1),
    "history.max_runs_per_task": _whole(1, optional=True),
    "history.max_age": _duration(optional=True),
    "logging.loglevel": _choice(LOG_LEVELS, any_case=True),
    "logging.output": _choice(LOG_OUTPUTS),
    "logging.format": _choice(LOG_FORMATS),
    "log_file": _text("a file path such as sts.log"),
    "plugins.disable": _names,
}
CORE_KEYS: frozenset[str] = frozenset(path.split(".")[0] for path in CORE_RULES)
CORE_SECTIONS: dict[str, frozenset[str]] = {
    section: frozenset(path.split(".")[1] for path in CORE_RULES if path.startswith(section + "."))
    for section in CORE_KEYS
    if any(path.startswith(section + ".") for path in CORE_RULES)
}


@attrs.frozen
class _Section:
    """A plugin's config section as registered through ``register_config_sections``."""

    plugin: str
    defaults: Mapping[str, Any]
    validate: Callable[[Mapping[str, Any]], Any] | None


# --- reading files ----------------------------------------------------------------------------


@functools.cache
def _packaged_defaults() -> dict[str, Any]:
    # Parsed once per process; callers copy (``_deep_merge`` never shares nested objects).
    text = resources.files("sts_core").joinpath(DEFAULTS_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def packaged_defaults() -> dict[str, Any]:
    """The packaged defaults (``sts_core/default.yaml``) as a fresh mapping."""
    return copy.deepcopy(_packaged_defaults())


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _file_error(path, "file not found; expected a YAML or JSON configuration file") from None
    except UnicodeDecodeError as exc:
        raise _file_error(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise _file_error(path, f"cannot read the file: {exc.strerror or exc}") from None


def _file_error(path: Path | str, message: str, line: int | None = None) -> ConfigError:
    return ConfigError([Problem("", message, line)], source=str(path))


def _key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Map each key path of a composed YAML document to the (1-based) line of its key."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                path = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
                lines[path] = key_node.start_mark.line + 1
                lines.update(_key_lines(value_node, path))
    return lines


def _parse_yaml(text: str) -> tuple[Any, dict[str, int]]:
    """Data and key-path lines from one parse (``SafeLoader``: no arbitrary objects)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, _key_lines(node)


def _top_level(path: Path, data: Any, kind: str) -> Mapping[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise _file_error(
            path, f"expected a mapping of settings at the top level of the {kind} file, got {type(data).__name__}"
        )
    return data


def _read_yaml(path: Path) -> tuple[Mapping[str, Any], dict[str, int]]:
    text = _read_text(path)
    try:
        data, lines = _parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        if mark is None:
            raise _file_error(path, f"malformed YAML: {what}") from None
        raise _file_error(
            path, f"malformed YAML at line {mark.line + 1}, column {mark.column + 1}: {what}", mark.line + 1
        ) from None
    except yaml.YAMLError as exc:
        raise _file_error(path, f"malformed YAML: {exc}") from None
    return _top_level(path, data, "YAML"), lines


def _read_json(path: Path) -> tuple[Mapping[str, Any], dict[str, int]]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _file_error(
            path, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", exc.lineno
        ) from None
    try:  # JSON is (almost always) YAML: reuse the YAML composer to find the line of each key
        lines = _key_lines(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        lines = {}
    return _top_level(path, data, "JSON"), lines


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix in JSON_SUFFIXES:
        return "json"
    raise _file_error(path, f"unknown file type {suffix or '(none)'!r}; expected a .yaml, .yml or .json file")


# --- merging, references and environment overrides ---------------------------------------------


def _plain(value: Any) -> Any:
    """A deep copy made of dicts and lists, so no caller's object is shared or mutated."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return copy.deepcopy(value)


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: mappings merge key by key, anything else replaces.

    An empty section (``logging:`` with nothing under it, i.e. null) keeps the defaults.
    """
    result = _plain(base)
    for key, value in override.items():
        current = result.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            result[key] = _deep_merge(current, value)
        elif isinstance(current, dict) and value is None:
            continue
        else:
            result[key] = _plain(value)
    return result


_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)\}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@attrs.define
class _Resolution:
    """What resolving a raw mapping found: problems and where values came from."""

    problems: list[Problem] = attrs.field(factory=list)
    interpolated: set[str] = attrs.field(factory=set)
    from_env: dict[str, str] = attrs.field(factory=dict)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _interpolate(value: Any, path: str, environ: Mapping[str, str], found: _Resolution) -> Any:
    if isinstance(value, dict):
        return {key: _interpolate(item, _join(path, key), environ, found) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, f"{path}[{index}]", environ, found) for index, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        escaped, inner = match.groups()
        if escaped:
            return match.group(0)[1:]
        name, has_fallback, fallback = inner.partition(":-")
        if not _VARIABLE.fullmatch(name):
            found.problems.append(
                Problem(path, f"malformed reference ${{{inner}}}; expected ${{NAME}} or ${{NAME:-fallback}}")
            )
            return match.group(0)
        current = environ.get(name)
        if current:
            return current
        if has_fallback:
            return fallback
        if current is None:
            found.problems.append(
                Problem(path, f"environment variable {name} is not set; set it or write ${{{name}:-fallback}}")
            )
        return ""

    found.interpolated.add(path)
    return _REFERENCE.sub(replace, value)


def _leaves(data: dict[str, Any], parts: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every key path whose value is not a mapping, with the mapping that holds it."""
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*parts, str(key)))
        else:
            yield (*parts, str(key)), data


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _apply_env(data: dict[str, Any], environ: Mapping[str, str], pinned: frozenset[str], found: _Resolution) -> None:
    """Override existing keys from ``STS_<KEY>`` / ``STS_<SECTION>__<KEY>`` variables, in place."""
    variables: dict[str, str] = {}
    # An exact upper-case name wins over other spellings of the same name.
    for name in sorted((n for n in environ if n.upper().startswith(ENV_PREFIX)), key=lambda n: n == n.upper()):
        variables[name.upper()] = name
    if not variables:
        return
    for parts, holder in list(_leaves(data)):
        path = ".".join(parts)
        if any(path == p or path.startswith(p + ".") for p in pinned):
            continue
        name = variables.get(_env_name(path))
        if name is not None:
            holder[_original_key(holder, parts[-1])] = _parse_scalar(environ[name])
            found.from_env[path] = name


def _original_key(holder: dict[str, Any], key: str) -> Any:
    # ``_leaves`` stringifies keys; find the real one (YAML allows ``1:`` as a key).
    return next(k for k in holder if str(k) == key)


def _env_name(path: str) -> str:
    """The environment variable that overrides ``path``: ``logging.loglevel`` -> ``STS_LOGGING__LOGLEVEL``."""
    return ENV_PREFIX + ENV_SEPARATOR.join(part.upper() for part in path.split("."))


def _lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _unknown_key(key: str, known: frozenset[str] | set[str], where: str) -> str:
    return f"unknown key {key!r}{did_you_mean(key, known)}; expected one of {one_of(known)} {where}"


def _section_validator(extra: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], Any] | None:
    # ``register(name, defaults, validate=f)`` lands in extra["validate"]; accept it positionally too.
    validate = extra.get("validate")
    if validate is None and extra.get("args"):
        validate = extra["args"][0]
    return validate


def _inactive_plugin_names(pm: PluginManager) -> set[str]:
    """Names of disabled or failed plugins: their sections in a file are not errors."""
    names: set[str] = set()
    for info in pm.plugin_infos():
        if info.status != "enabled":
            names.add(info.name)
            if info.distribution:
                names.update({info.distribution, info.distribution.removeprefix("sts-")})
    return names


# --- the Config class ----------------------------------------------------------------------------


class Config:
    """The resolved, validated configuration of one scheduler or CLI call.

    ``Config()`` is the packaged defaults; ``Config(data)`` merges ``data`` over them;
    ``Config.from_yaml(path)`` / ``from_json(path)`` / ``from_file(path)`` read a file.
    Values are read with ``config.get("logging.loglevel")``, ``config["retries"]``,
    ``config.seconds("retry_delay")`` and ``config.section("executor")``. A Config does not
    change after construction except through ``set`` and ``validate_sections``, both of which
    validate the result before keeping it. Invalid values raise ``ConfigError`` with every
    problem found.
    """

    __hash__ = None  # type: ignore[assignment]  # mutable through set()

    def __init__(self, data: Mapping[str, Any] | None = None, *, source: str | None = None) -> None:
        self._init(data, source=source, lines={})

    def _init(self, data: Any, *, source: str | None, lines: Mapping[str, int]) -> None:
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError([Problem("", _expected("a mapping of settings", data))], source=source)
        self._source = source
        self._lines = dict(lines)
        self._pinned: frozenset[str] = frozenset()
        self._sections: dict[str, _Section] | None = None
        self._tolerated: frozenset[str] = frozenset()
        self._raw = _deep_merge(_packaged_defaults(), data or {})
        self._resolved = self._resolve(self._raw, self._pinned, self._sections, self._tolerated)

    # -- construction from files ------------------------------------------------------------

    @classmethod
    def _from_parsed(cls, path: Path, parsed: tuple[Mapping[str, Any], dict[str, int]]) -> Config:
        config = cls.__new__(cls)
        config._init(parsed[0], source=str(path), lines=parsed[1])
        return config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Config:
        """Read a YAML file (safely: plain data only) over the packaged defaults."""
        return cls._from_parsed(Path(path), _read_yaml(Path(path)))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Config:
        """Read a JSON file over the packaged defaults."""
        return cls._from_parsed(Path(path), _read_json(Path(path)))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Config:
        """Read a ``.yaml``/``.yml`` or ``.json`` file, chosen by its extension."""
        kind = _file_kind(Path(path))
        return cls.from_yaml(path) if kind == "yaml" else cls.from_json(path)

    # -- resolution and validation ----------------------------------------------------------

    def _resolve(
        self,
        raw: dict[str, Any],
        pinned: frozenset[str],
        sections: dict[str, _Section] | None,
        tolerated: frozenset[str],
        problems: list[Problem] | None = None,
    ) -> dict[str, Any]:
        """Interpolate, apply environment overrides and validate ``raw``; raise on any problem."""
        found = _Resolution(problems=list(problems or ()))
        resolved = _interpolate(raw, "", os.environ, found)
        _apply_env(resolved, os.environ, pinned, found)
        # A reference in a value an STS_* variable replaced does not matter any more.
        found.problems = [p for p in found.problems if p.key_path not in found.from_env]
        for problem in found.problems:
            problem.line = self._line(problem.key_path, found)
        self._check_core(resolved, sections, tolerated, found)
        if sections:
            self._check_sections(resolved, sections, found)
        if found.problems:
            found.problems.sort(key=lambda problem: (problem.line is None, problem.line or 0))
            raise ConfigError(found.problems, source=self._source)
        return resolved

    def _line(self, path: str, found: _Resolution) -> int | None:
        if path in found.from_env:
            return None
        return self._lines.get(path.split("[")[0])

    def _problem(self, path: str, message: str, found: _Resolution) -> Problem:
        variable = found.from_env.get(path)
        if variable is not None:
            message += f" (from environment variable {variable})"
        return Problem(path, message, self._line(path, found))

    def _check_core(
        self,
        data: dict[str, Any],
        sections: dict[str, _Section] | None,
        tolerated: frozenset[str],
        found: _Resolution,
    ) -> None:
        add = found.problems.append
        known_top = CORE_KEYS | set(sections or ())
        for key, value in data.items():
            key = str(key)
            if key in CORE_SECTIONS:
                if not isinstance(value, dict):
                    add(
                        self._problem(
                            key, _expected(f"a mapping with the keys {one_of(CORE_SECTIONS[key])}", value), found
                        )
                    )
                    continue
                for sub in value:
                    if sub not in CORE_SECTIONS[key]:
                        add(
                            self._problem(
                                f"{key}.{sub}", _unknown_key(str(sub), CORE_SECTIONS[key], f"in {key}"), found
                            )
                        )
            elif key in known_top or key in tolerated:
                continue
            elif sections is not None or not isinstance(value, dict):
                # Before validate_sections a mapping may be a plugin's section; a plain value never is.
                if sections is None:
                    where = "(the core keys; a plugin's section would be a mapping)"
                else:
                    where = "(the core keys and the sections of installed plugins)"
                add(self._problem(key, _unknown_key(key, known_top, where), found))
        for path, check in CORE_RULES.items():
            value = _lookup(data, path)
            if value is _MISSING or (message := check(value)) is None:
                continue
            if check in _NUMERIC_CHECKS and path in found.interpolated and path not in found.from_env:
                message += f"; a ${{...}} reference always gives text: set numbers with {_env_name(path)}"
            add(self._problem(path, message, found))

    def _check_sections(self, data: dict[str, Any], sections: dict[str, _Section], found: _Resolution) -> None:
        for name, section in sections.items():
            values = data.get(name)
            if not isinstance(values, dict):
                expectation = f"a mapping of settings for plugin {section.plugin!r}"
                found.problems.append(self._problem(name, _expected(expectation, values), found))
                continue
            if section.validate is None:
                continue
            try:
                reported = list(section.validate(copy.deepcopy(values)) or ())
            except Exception as exc:  # noqa: BLE001 - a broken validator is reported, not raised
                message = f"the validator of plugin {section.plugin!r} failed: {type(exc).__name__}: {exc}"
                found.problems.append(Problem(name, message))
                continue
            for item in reported:
                key_path, message = (item.key_path, item.message) if isinstance(item, Problem) else item
                key_path = str(key_path)
                if key_path != name and not key_path.startswith(name + "."):
                    key_path = _join(name, key_path) if key_path else name
                found.problems.append(self._problem(key_path, str(message), found))

    def validate_sections(self, pm: PluginManager) -> Config:
        """Check the config against the installed plugins; return ``self``.

        Merges each registered section's defaults beneath the user's values, runs each
        section's validator, and rejects top-level keys that are neither core keys nor
        registered sections (sections of disabled or failed plugins are tolerated). Raises
        ``ConfigError`` with every problem; on error the config is unchanged.
        """
        problems: list[Problem] = []
        sections: dict[str, _Section] = {}
        for name, registration in pm.config_sections().items():
            if name in CORE_KEYS:
                problems.append(
                    Problem(
                        name,
                        f"plugin {registration.plugin!r} registers the config section "
                        f"{name!r}, which is a core key; the plugin must choose another name",
                    )
                )
                continue
            if not isinstance(registration.value, Mapping):
                problems.append(
                    Problem(
                        name,
                        f"plugin {registration.plugin!r} registers defaults for config section "
                        f"{name!r} that are not a mapping: {registration.value!r}",
                    )
                )
                continue
            sections[name] = _Section(registration.plugin, registration.value, _section_validator(registration.extra))
        raw = _plain(self._raw)
        for name, section in sections.items():
            user = raw.get(name)
            if user is None:
                raw[name] = _plain(section.defaults)
            elif isinstance(user, dict):
                raw[name] = _deep_merge(section.defaults, user)
        tolerated: frozenset[str] = frozenset()
        if any(key not in CORE_KEYS and key not in sections for key in raw):
            tolerated = frozenset(_inactive_plugin_names(pm))
            for key in tolerated & set(raw):
                log.info("config section %r is ignored: plugin %r is disabled or failed to load", key, key)
        resolved = self._resolve(raw, self._pinned, sections, tolerated, problems)
        self._raw, self._resolved, self._sections, self._tolerated = raw, resolved, sections, tolerated
        return self

    def set(self, path: str, value: Any) -> None:
        """Set the value at a dotted ``path`` (creating sections as needed) and re-validate.

        A value set here wins over ``STS_*`` environment overrides and is written by
        ``save_config``. Raises ``ConfigError`` (and changes nothing) when the result is invalid.
        """
        parts = path.split(".")
        raw = _plain(self._raw)
        holder = raw
        for index, part in enumerate(parts[:-1]):
            child = holder.get(part)
            if child is None:
                child = holder[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: index + 1])
                raise ConfigError(
                    [Problem(where, f"cannot set {path!r}: {where!r} holds {child!r}, not a mapping")],
                    source=self._source,
                )
            holder = child
        holder[parts[-1]] = _plain(value)
        pinned = self._pinned | {path}
        self._resolved = self._resolve(raw, pinned, self._sections, self._tolerated)
        self._raw, self._pinned = raw, pinned

    # -- access -------------------------------------------------------------------------------

    @property
    def source(self) -> str | None:
        """The file the config was read from (or the ``source`` given), for messages."""
        return self._source

    @property
    def data(self) -> dict[str, Any]:
        """A deep copy of the resolved configuration."""
        return copy.deepcopy(self._resolved)

    def get(self, path: str, default: Any = None) -> Any:
        """The resolved value at a dotted ``path`` such as ``logging.loglevel``, or ``default``."""
        value = _lookup(self._resolved, path)
        if value is _MISSING:
            return default
        return copy.deepcopy(value) if isinstance(value, (dict, list)) else value

    def __getitem__(self, path: str) -> Any:
        value = self.get(path, _MISSING)
        if value is _MISSING:
            raise KeyError(f"no config key {path!r}{did_you_mean(path, self._paths())}")
        return value

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and _lookup(self._resolved, path) is not _MISSING

    def _paths(self) -> list[str]:
        return [".".join(parts) for parts, _ in _leaves(self._resolved)] + list(self._resolved)

    def seconds(self, path: str) -> float | None:
        """The duration at ``path`` in seconds (float); null stays None."""
        value = self[path]
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError([Problem(path, str(exc), self._lines.get(path))], source=self._source) from None

    def section(self, name: str) -> dict[str, Any]:
        """The resolved mapping of section ``name`` (empty when the config has no such section)."""
        value = self.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(
                [Problem(name, _expected("a mapping of settings", value), self._lines.get(name))], source=self._source
            )
        return value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return self._resolved == other._resolved

    def __repr__(self) -> str:
        return f"Config(source={self._source!r})"

    # -- saving -------------------------------------------------------------------------------

    def save_config(self, path: str | os.PathLike[str]) -> None:
        """Write the config as YAML or JSON (by extension), before ``${VAR}`` references and
        ``STS_*`` overrides are applied, so values from the environment stay out of the file.
        ``Config.from_file(path)`` reads back an equal config."""
        target = Path(path)
        data = _serialisable(self._raw)
        if _file_kind(target) == "json":
            text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        else:
            text = "# STS configuration. Every core key is described in sts_core/default.yaml.\n"
            text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
        try:
            _write_atomically(target, text)
        except OSError as exc:
            raise _file_error(target, f"cannot write the file: {exc.strerror or exc}") from None


def _serialisable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _serialisable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_serialisable(item) for item in value]
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _write_atomically(target: Path, text: str) -> None:
    # A crash mid-write must not leave a truncated config behind: write aside, then rename.
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
