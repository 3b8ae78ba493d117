"""The ``api`` config section: defaults, validation, and the settings the server uses.

Tokens are secrets: no message here shows one, and ``Settings``' repr leaves them out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from sts.plugin import check_section, did_you_mean, format_address, parse_duration
from sts.plugin import parse_address as parse_host_port

#: The ``api`` config section with its defaults.
DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "address": "127.0.0.1:8080",
    "admin_token": "${STS_API_TOKEN:-}",
    "read_token": "${STS_API_READ_TOKEN:-}",
    "tokens": [],
    "max_body_bytes": 65536,
    "cors_origins": [],
    "allowed_functions": [],
    "allowed_task_types": ["python"],
    "allowed_commands": [],
    "allowed_cwds": [],
    "run_any_task": False,
    "allowed_hosts": [],
    "request_timeout": 10,
    "max_connections": 100,
}

SCOPES: tuple[str, ...] = ("read", "admin")
MIN_TOKEN_LENGTH = 16
MIN_BODY_BYTES = 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
MIN_REQUEST_TIMEOUT = 0.1
MAX_REQUEST_TIMEOUT = 600.0
MAX_CONNECTIONS = 100_000
ADDRESS_EXPECTED = (
    "expected host:port such as 127.0.0.1:8080 (this host only), 0.0.0.0:8080 (every interface) "
    "or [::1]:8080; port 0 picks a free port"
)
_TOKEN_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")


@attrs.frozen
class Token:
    """One bearer token and the scope it grants (``read`` or ``admin``). ``name`` is what logs show."""

    name: str
    scope: str
    secret: str = attrs.field(repr=False)


@attrs.frozen
class Settings:
    """The ``api`` section, checked and converted."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    tokens: tuple[Token, ...] = ()
    max_body_bytes: int = 65536
    cors_origins: tuple[str, ...] = ()
    allowed_functions: tuple[str, ...] = ()
    allowed_task_types: tuple[str, ...] = ("python",)
    allowed_commands: tuple[str, ...] = ()
    allowed_cwds: tuple[str, ...] = ()
    run_any_task: bool = False
    allowed_hosts: tuple[str, ...] = ()
    request_timeout: float = 10.0
    max_connections: int = 100

    @property
    def address(self) -> str:
        """The configured address as written in config (``host:port``, IPv6 in brackets)."""
        return format_address(self.host, self.port)

    @classmethod
    def from_config(cls, config: Any) -> Settings:
        """Read the section from a config validated by ``validate_section`` (through the kernel)."""
        section = {key: config.get(f"api.{key}", default) for key, default in DEFAULTS.items()}
        host, port = parse_address(section["address"])
        return cls(
            enabled=bool(section["enabled"]),
            host=host,
            port=port,
            tokens=tokens_of(section),
            max_body_bytes=int(section["max_body_bytes"]),
            cors_origins=tuple(section["cors_origins"] or ()),
            allowed_functions=tuple(section["allowed_functions"] or ()),
            allowed_task_types=tuple(section["allowed_task_types"] or ()),
            allowed_commands=tuple(section["allowed_commands"] or ()),
            allowed_cwds=tuple(section["allowed_cwds"] or ()),
            run_any_task=bool(section["run_any_task"]),
            allowed_hosts=tuple(host.lower() for host in section["allowed_hosts"] or ()),
            request_timeout=parse_duration(section["request_timeout"]),
            max_connections=int(section["max_connections"]),
        )


def tokens_of(section: Mapping[str, Any]) -> tuple[Token, ...]:
    """Every configured token: ``admin_token``, ``read_token`` (when not empty), then ``tokens``."""
    found = []
    if section.get("admin_token"):
        found.append(Token("admin_token", "admin", section["admin_token"]))
    if section.get("read_token"):
        found.append(Token("read_token", "read", section["read_token"]))
    for index, entry in enumerate(section.get("tokens") or ()):
        found.append(Token(str(entry.get("name") or f"tokens[{index}]"), entry["scope"], entry["token"]))
    return tuple(found)


def parse_address(value: Any) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"``) as ``(host, port)``; raises ``ValueError`` saying what is expected."""
    return parse_host_port(value, ADDRESS_EXPECTED)


# --- validation ---------------------------------------------------------------------------------------

Found = list[tuple[str, str]]


def validate_section(section: Mapping[str, Any]) -> Found:
    """Problems in the ``api`` section as ``(key_path, message)``, key paths relative to it."""
    problems: Found = check_section("api", section, _CHECKS)
    if not problems:
        problems.extend(_token_set_problems(section))
    return problems


def _token_set_problems(section: Mapping[str, Any]) -> Found:
    tokens = tokens_of(section)
    seen: dict[str, str] = {}
    problems = []
    for token in tokens:
        if token.secret in seen:
            problems.append((_token_path(token), f"the same token as {seen[token.secret]}: give each scope "
                                                 "its own token (not shown: tokens are secrets)"))
        seen.setdefault(token.secret, token.name)
    if section.get("enabled") is True and not tokens:
        problems.append(("admin_token", "required when api.enabled is true: set the STS_API_TOKEN environment "
                                        f"variable (api.admin_token: ${{STS_API_TOKEN}}); {_TOKEN_HINT}"))
    return problems


def _token_path(token: Token) -> str:
    return token.name if token.name in ("admin_token", "read_token") else "tokens"


def _check_bool(value: Any) -> Found:
    return [] if isinstance(value, bool) else [("", f"expected true or false, got {value!r}")]


def _check_address(value: Any) -> Found:
    try:
        parse_address(value)
    except ValueError as exc:
        return [("", str(exc))]
    return []


def _secret_problem(value: Any) -> str | None:
    """What is wrong with a token, without showing it."""
    if not isinstance(value, str):
        return f"expected text (a bearer token), got {type(value).__name__}"
    if any(ch.isspace() for ch in value) or not value.isprintable():
        return "expected a token without spaces or control characters (not shown: tokens are secrets)"
    if len(value) < MIN_TOKEN_LENGTH:
        return (f"expected a token of at least {MIN_TOKEN_LENGTH} characters, got {len(value)} "
                f"(not shown: tokens are secrets); {_TOKEN_HINT}")
    return None


def _check_optional_token(value: Any) -> Found:
    if value is None or value == "":
        return []
    problem = _secret_problem(value)
    return [("", problem)] if problem else []


def _check_tokens(value: Any) -> Found:
    if value is None:
        return []
    if not isinstance(value, list):
        return [("", "expected a list of {token: ..., scope: read|admin, name: ...} entries")]
    problems: Found = []
    for index, entry in enumerate(value):
        where = f"[{index}]"
        if not isinstance(entry, Mapping):
            problems.append((where, "expected a mapping with the keys token, scope and (optionally) name"))
            continue
        for key in entry:
            if key not in ("token", "scope", "name"):
                problems.append((f"{where}.{key}", f"unknown token option{did_you_mean(str(key), ('token', 'scope'))}; "
                                                   "expected token, scope and name"))
        problem = _secret_problem(entry.get("token")) if "token" in entry else "required: the bearer token"
        if problem:
            problems.append((f"{where}.token", problem))
        if entry.get("scope") not in SCOPES:
            problems.append((f"{where}.scope", f"expected read or admin, got {entry.get('scope')!r}"))
        if entry.get("name") is not None and not isinstance(entry.get("name"), str):
            problems.append((f"{where}.name", f"expected text (how logs name the token), got {entry.get('name')!r}"))
    return problems


def _check_body_limit(value: Any) -> Found:
    if isinstance(value, int) and not isinstance(value, bool) and MIN_BODY_BYTES <= value <= MAX_BODY_BYTES:
        return []
    return [("", f"expected a whole number of bytes from {MIN_BODY_BYTES} to {MAX_BODY_BYTES}, got {value!r}")]


def _string_list(what: str, item_check: Callable[[str], str | None] | None = None) -> Callable[[Any], Found]:
    def check(value: Any) -> Found:
        if value is None:
            return []
        if not isinstance(value, list):
            return [("", f"expected a list of {what}, got {value!r}")]
        problems: Found = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                problems.append((f"[{index}]", f"expected {what[:-1] if what.endswith('s') else what}, got {item!r}"))
            elif item_check is not None and (problem := item_check(item)) is not None:
                problems.append((f"[{index}]", problem))
        return problems

    return check


def _origin_problem(origin: str) -> str | None:
    if origin == "*" or _ORIGIN.match(origin):
        return None
    return f"expected an origin such as https://ops.example.com (scheme, host and port, no path) or *, got {origin!r}"


def _function_pattern_problem(pattern: str) -> str | None:
    if pattern.count(":") > 1:
        return f"expected 'module:function' (one ':') or a registered name, got {pattern!r}"
    module, colon, attribute = pattern.partition(":")
    if colon and (not module or not attribute):
        return f"expected a module pattern and a function pattern around the ':', such as myapp.jobs:*, got {pattern!r}"
    return None


def _cwd_problem(path: str) -> str | None:
    parts = path.split("/")
    if not path.startswith("/") or ".." in parts or "\x00" in path:
        return f"expected an absolute directory such as /srv/reports (no '..'), got {path!r}"
    return None


def _host_problem(host: str) -> str | None:
    if host == "*" or re.fullmatch(r"(\*\.)?[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]", host):
        return None
    return (f"expected a host name or address without port, such as api.example.com, *.example.com, 10.0.0.5, "
            f"[fd00::5] or * (any), got {host!r}")


def _check_request_timeout(value: Any) -> Found:
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = -1.0
    if MIN_REQUEST_TIMEOUT <= seconds <= MAX_REQUEST_TIMEOUT:
        return []
    return [("", f"expected a duration from {MIN_REQUEST_TIMEOUT:g}s to {MAX_REQUEST_TIMEOUT:g}s such as 10s, "
                 f"got {value!r}")]


def _check_connections(value: Any) -> Found:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_CONNECTIONS:
        return []
    return [("", f"expected a whole number of connections from 1 to {MAX_CONNECTIONS}, got {value!r}")]


_CHECKS: dict[str, Callable[[Any], Found]] = {
    "enabled": _check_bool,
    "address": _check_address,
    "admin_token": _check_optional_token,
    "read_token": _check_optional_token,
    "tokens": _check_tokens,
    "max_body_bytes": _check_body_limit,
    "cors_origins": _string_list("origins", _origin_problem),
    "allowed_functions": _string_list("patterns", _function_pattern_problem),
    "allowed_task_types": _string_list("task type names"),
    "allowed_commands": _string_list("patterns"),
    "allowed_cwds": _string_list("absolute paths", _cwd_problem),
    "run_any_task": _check_bool,
    "allowed_hosts": _string_list("host names", _host_problem),
    "request_timeout": _check_request_timeout,
    "max_connections": _check_connections,
}
