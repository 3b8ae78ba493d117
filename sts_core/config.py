"""Configuration: packaged defaults, a YAML or JSON file, ``${VAR}`` references and ``STS_*`` overrides.

A ``Config`` is resolved in four steps (``sts_core/default.yaml`` documents each for users):

1. the packaged defaults are deep-merged with the user's data (a file or a mapping);
2. ``${VAR}`` and ``${VAR:-fallback}`` in text values are replaced from the environment;
3. ``STS_<KEY>`` and ``STS_<SECTION>__<KEY>`` environment variables override existing keys;
4. every core key is validated; ``validate_sections`` adds the plugins' sections.

``save_config`` writes the data of step 1, so values from the environment (secrets) never
land in a file. Every problem names the file, the line, the key path and what was expected.

The rules of the core keys live in ``sts_core.configschema``; reading and writing files,
merging, references and environment overrides in ``sts_core.configfiles``. The names
listed in ``__all__`` stay importable from here.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import yaml

from sts_core.configfiles import (
    _MISSING,
    DEFAULTS_FILE,
    ENV_PREFIX,
    ENV_SEPARATOR,
    JSON_SUFFIXES,
    YAML_SUFFIXES,
    _apply_env,
    _deep_merge,
    _env_name,
    _file_error,
    _file_kind,
    _interpolate,
    _join,
    _leaves,
    _lookup,
    _packaged_defaults,
    _plain,
    _read_json,
    _read_yaml,
    _Resolution,
    _serialisable,
    _write_atomically,
    packaged_defaults,
)
from sts_core.configschema import (
    _NUMERIC_CHECKS,
    CORE_KEYS,
    CORE_RULES,
    CORE_SECTIONS,
    LOG_FORMATS,
    LOG_LEVELS,
    LOG_OUTPUTS,
    Check,
    _expected,
    _unknown_key,
)
from sts_core.durations import parse_duration
from sts_core.errors import ConfigError, Problem
from sts_core.wording import did_you_mean, one_of, short_repr

if TYPE_CHECKING:
    from sts_core.plugins import PluginManager

__all__ = [
    "CORE_KEYS",
    "CORE_RULES",
    "CORE_SECTIONS",
    "DEFAULTS_FILE",
    "ENV_PREFIX",
    "ENV_SEPARATOR",
    "JSON_SUFFIXES",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LOG_OUTPUTS",
    "YAML_SUFFIXES",
    "Check",
    "Config",
    "packaged_defaults",
]

log = logging.getLogger("sts.config")

# --- plugins' sections ---------------------------------------------------------------------------


@attrs.frozen
class _Section:
    """A plugin's config section as registered through ``register_config_sections``."""

    plugin: str
    defaults: Mapping[str, Any]
    validate: Callable[[Mapping[str, Any]], Any] | None


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
                    [Problem(where, f"cannot set {path!r}: {where!r} holds {short_repr(child)}, not a mapping")],
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
