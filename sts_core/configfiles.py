"""Where config data comes from: packaged defaults, YAML and JSON files, ``${VAR}`` references, ``STS_*`` variables.

Files are read with the line of every key path, so ``Config`` can name the line of each
problem; they are written atomically and before references and overrides are applied.
The helpers here build and transform plain data; ``Config`` (``sts_core.config``) decides
when to use them and validates the result against ``sts_core.configschema``.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import yaml

from sts_core.documents import Document, DocumentError, parse_json, parse_yaml
from sts_core.errors import ConfigError, Problem
from sts_core.yamlsafe import UnsafeYamlError, safe_load

DEFAULTS_FILE = "default.yaml"
ENV_PREFIX = "STS_"
ENV_SEPARATOR = "__"
YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIXES = (".json",)

_MISSING = object()

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


def _top_level(path: Path, data: Any, kind: str) -> Mapping[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise _file_error(
            path, f"expected a mapping of settings at the top level of the {kind} file, got {type(data).__name__}"
        )
    return data


def _read_yaml(path: Path) -> tuple[Mapping[str, Any], dict[str, int]]:
    return _read_document(path, "YAML", parse_yaml)


def _read_json(path: Path) -> tuple[Mapping[str, Any], dict[str, int]]:
    return _read_document(path, "JSON", parse_json)


def _read_document(
    path: Path, kind: str, parse: Callable[[str], Document]
) -> tuple[Mapping[str, Any], dict[str, int]]:
    """The file's settings and the line of each dotted key path (not those inside lists)."""
    try:
        document = parse(_read_text(path))
    except DocumentError as exc:
        raise _file_error(path, str(exc), exc.line) from None
    lines = {**document.lines, **{key_path: line for key_path, _, _, line in document.duplicate_keys}}
    # A key given twice keeps its last value (as YAML and JSON loaders do), so its last line.
    dotted = {".".join(key_path): line for key_path, line in lines.items()  # type: ignore[arg-type]
              if key_path and all(isinstance(key, str) for key in key_path)}
    return _top_level(path, document.data, kind), dotted


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
        return safe_load(text)
    except (yaml.YAMLError, UnsafeYamlError):
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



# --- writing files -------------------------------------------------------------------------------


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
