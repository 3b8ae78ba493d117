"""The ``slack`` config section: defaults, validation (never echoing a webhook URL) and the
``SlackSettings`` the other modules read."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from sts.plugin import ConfigError, Problem, check_section, did_you_mean, one_of, parse_duration
from sts_slack.redaction import redact_url

#: The alert kinds, in the order they are documented. Each maps to one event:
#: failure - RunFailed (failed, timed out or poison: the run will not be tried again);
#: retry - RunRetrying after an error; timeout - RunRetrying after a timeout;
#: skipped - RunSkipped because an upstream task failed; missed - FireMissed;
#: lost - RunLost (the worker died; the run was delivered again);
#: recovered - the first RunSucceeded after a failure that was alerted.
KINDS: tuple[str, ...] = ("failure", "retry", "timeout", "skipped", "missed", "lost", "recovered")
#: What a bare ``on:`` key (YAML reads it as ``true``) is told.
YAML_ON = "YAML reads a bare `on` key as true; the switches are called alert_on"
#: The name a task uses for ``slack.webhook_url`` in ``alerts: {slack: {webhook: ...}}``.
DEFAULT_WEBHOOK = "default"

#: The ``slack`` config section with its defaults.
DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "webhook_url": None,
    "webhooks": {},
    "alert_on": {
        "failure": True,
        "retry": False,
        "timeout": False,
        "skipped": False,
        "missed": False,
        "lost": False,
        "recovered": True,
    },
    "throttle": "10m",
    "timeout": "5s",
    "max_attempts": 3,
    "backoff": "1s",
    "max_retry_after": "60s",
    "max_queue": 1000,
    "shutdown_grace": "5s",
    "dashboard_url": None,
    "username": None,
    "icon": None,
    "traceback_lines": 20,
}

_WEBHOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]{0,9}$")
_EMOJI = re.compile(r"^:[a-z0-9_+\-']+:$")
_PLACEHOLDERS = ("task", "run_id")
_URL_EXAMPLE = "https://hooks.slack.com/services/..."


def _redacted_url(url: str | None) -> str:
    return "None" if url is None else repr(redact_url(url))


def _redacted_webhooks(webhooks: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{name!r}: {redact_url(url)!r}" for name, url in webhooks.items()) + "}"


@attrs.frozen
class SlackSettings:
    """The validated ``slack`` section, durations in seconds. Its repr shows the webhook URLs
    as scheme and host only (they are secrets)."""

    enabled: bool = False
    webhook_url: str | None = attrs.field(default=None, repr=_redacted_url)
    webhooks: Mapping[str, str] = attrs.field(factory=dict, repr=_redacted_webhooks)
    alert_on: Mapping[str, bool] = attrs.field(factory=lambda: dict(DEFAULTS["alert_on"]))
    throttle: float = 600.0
    timeout: float = 5.0
    max_attempts: int = 3
    backoff: float = 1.0
    max_retry_after: float = 60.0
    max_queue: int = 1000
    shutdown_grace: float = 5.0
    dashboard_url: str | None = None
    username: str | None = None
    icon: str | None = None
    traceback_lines: int = 20

    @property
    def webhook_names(self) -> tuple[str, ...]:
        """The names a task may route to: ``default`` (``webhook_url``) and each of ``webhooks``."""
        return (DEFAULT_WEBHOOK, *self.webhooks)

    def url_of(self, name: str | None) -> str | None:
        """The URL of webhook ``name`` (None or ``default``: ``webhook_url``), or None."""
        if name is None or name == DEFAULT_WEBHOOK:
            return self.webhook_url
        return self.webhooks.get(name)

    def secrets(self) -> list[str]:
        """Every configured webhook URL."""
        return [url for url in (self.webhook_url, *self.webhooks.values()) if url]


def merged_with_defaults(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """``section`` over ``DEFAULTS`` (``alert_on`` merged key by key)."""
    values: dict[str, Any] = {**DEFAULTS, **(section or {})}
    if isinstance(values.get("alert_on"), Mapping):
        values["alert_on"] = {**DEFAULTS["alert_on"], **values["alert_on"]}
    return values


def validate_section(section: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems in the ``slack`` section as ``(key_path, message)``, paths relative to it.

    No message contains a webhook URL: a bad one is shown as scheme and host at most.
    """
    values = merged_with_defaults(section)
    problems: list[tuple[str, str]] = [("on", YAML_ON)] if True in values else []
    problems.extend(check_section("slack", {k: v for k, v in values.items() if k is not True}, _CHECKS))
    if values.get("enabled") is True and not values.get("webhook_url"):
        problems.append(("webhook_url", "required when slack.enabled is true: the incoming webhook URL, "
                                        "e.g. webhook_url: ${SLACK_WEBHOOK_URL}"))
    return problems


def settings_from_config(config: Any) -> SlackSettings:
    """The ``slack`` section of ``config`` (anything with ``get(path, default)``) as settings.

    Raises ``ConfigError`` naming each bad key (``slack.<key>``), never showing a URL.
    """
    section = config.get("slack", None)
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError([Problem("slack", "expected a mapping of slack settings")])
    values = merged_with_defaults(section)
    problems = validate_section(values)
    if problems:
        raise ConfigError([Problem(_path("slack", key), message) for key, message in problems])
    return SlackSettings(
        enabled=values["enabled"],
        webhook_url=values["webhook_url"] or None,
        webhooks={name: url for name, url in (values["webhooks"] or {}).items() if url},
        alert_on={kind: values["alert_on"][kind] for kind in KINDS},
        throttle=parse_duration(values["throttle"]),
        timeout=parse_duration(values["timeout"]),
        max_attempts=values["max_attempts"],
        backoff=parse_duration(values["backoff"]),
        max_retry_after=parse_duration(values["max_retry_after"]),
        max_queue=values["max_queue"],
        shutdown_grace=parse_duration(values["shutdown_grace"]),
        dashboard_url=values["dashboard_url"] or None,
        username=values["username"] or None,
        icon=values["icon"] or None,
        traceback_lines=values["traceback_lines"],
    )


# --- checks: each returns (sub_path, message) pairs ------------------------------------------------

Found = list[tuple[str, str]]


def _path(*parts: object) -> str:
    return ".".join(str(p) for p in parts if p not in ("", None))


def _bool(value: Any) -> Found:
    return [] if isinstance(value, bool) else [("", f"expected true or false, got {value!r}")]


def _url_problem(value: Any) -> str | None:
    """What is wrong with a webhook URL, without showing it (it is a secret)."""
    if not isinstance(value, str):
        return f"expected the webhook URL as text such as {_URL_EXAMPLE}, got a {type(value).__name__}"
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return f"expected an http:// or https:// URL such as {_URL_EXAMPLE}; the value given is not a valid URL " \
               "(not shown: webhook URLs are secrets)"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        if scheme in ("http", "https"):
            given = f"{scheme}:// without a host"
        elif _SCHEME.fullmatch(scheme):
            given = f"a URL starting {scheme}://"
        else:
            given = "text that does not start with http:// or https://"
        return f"expected an http:// or https:// URL such as {_URL_EXAMPLE}, got {given} (the rest is not shown: " \
               "webhook URLs are secrets)"
    if value != value.strip():
        return f"the webhook URL {redact_url(value)} has leading or trailing spaces"
    return None


def _webhook_url(value: Any) -> Found:
    if value is None or value == "":
        return []  # required only when enabled: checked by validate_section
    message = _url_problem(value)
    return [("", message)] if message else []


def _webhooks(value: Any) -> Found:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [("", f"expected a mapping of webhook names to URLs, e.g. data-team: ${{SLACK_DATA_TEAM_WEBHOOK}}; "
                     f"got a {type(value).__name__}")]
    problems: Found = []
    for name, url in value.items():
        if name == DEFAULT_WEBHOOK:
            problems.append((str(name), f"{DEFAULT_WEBHOOK!r} is the name of slack.webhook_url; choose another name"))
        elif not isinstance(name, str) or not _WEBHOOK_NAME.fullmatch(name):
            problems.append((str(name), "expected a webhook name of letters, digits and _ . - (at most 64)"))
        elif url is None or url == "":
            problems.append((name, "no URL: set it, e.g. ${SLACK_DATA_TEAM_WEBHOOK}, or remove the entry"))
        elif (message := _url_problem(url)) is not None:
            problems.append((name, message))
    return problems


def _alert_on(value: Any) -> Found:
    if not isinstance(value, Mapping):
        return [("", f"expected a mapping of alert kinds to true/false (kinds: {', '.join(KINDS)})")]
    problems: Found = []
    for kind, flag in value.items():
        if kind not in KINDS:
            problems.append((str(kind), f"unknown alert kind{did_you_mean(str(kind), KINDS)}; "
                                        f"expected one of {one_of(KINDS)}"))
        elif not isinstance(flag, bool):
            problems.append((kind, f"expected true or false, got {flag!r}"))
    return problems


def _duration(*, minimum_exclusive: bool) -> Callable[[Any], Found]:
    def check(value: Any) -> Found:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            return [("", str(exc))]
        if minimum_exclusive and seconds <= 0:
            return [("", f"expected a duration greater than zero such as 5s, got {value!r}")]
        return []

    return check


def _whole(minimum: int) -> Callable[[Any], Found]:
    def check(value: Any) -> Found:
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return []
        return [("", f"expected a whole number >= {minimum}, got {value!r}")]

    return check


def _dashboard_url(value: Any) -> Found:
    if value is None or value == "":
        return []
    example = "https://sts.example.com/runs/{run_id}"
    if not isinstance(value, str):
        return [("", f"expected a URL template such as {example}, got {value!r}")]
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(value) if field is not None]
    except ValueError as exc:
        return [("", f"expected a URL template such as {example} ({exc}; write {{{{ and }}}} for literal braces)")]
    for field in fields:
        if field not in _PLACEHOLDERS:
            hint = did_you_mean(field, _PLACEHOLDERS)
            return [("", f"unknown placeholder {{{field}}}{hint}; the template may use {{task}} and {{run_id}}")]
    scheme = urlsplit(value).scheme.lower()
    if scheme not in ("http", "https"):
        return [("", f"expected an http:// or https:// URL template such as {example}, got {value!r}")]
    return []


def _text(limit: int) -> Callable[[Any], Found]:
    def check(value: Any) -> Found:
        if value is None or (isinstance(value, str) and len(value) <= limit):
            return []
        return [("", f"expected text of at most {limit} characters, got {value!r}")]

    return check


def _icon(value: Any) -> Found:
    if value is None or value == "":
        return []
    if isinstance(value, str) and (_EMOJI.fullmatch(value) or urlsplit(value).scheme in ("http", "https")):
        return []
    return [("", f"expected an emoji such as :rotating_light: or an http(s) image URL, got {value!r}")]


_CHECKS: dict[str, Callable[[Any], Found]] = {
    "enabled": _bool,
    "webhook_url": _webhook_url,
    "webhooks": _webhooks,
    "alert_on": _alert_on,
    "throttle": _duration(minimum_exclusive=False),
    "timeout": _duration(minimum_exclusive=True),
    "max_attempts": _whole(1),
    "backoff": _duration(minimum_exclusive=False),
    "max_retry_after": _duration(minimum_exclusive=True),
    "max_queue": _whole(1),
    "shutdown_grace": _duration(minimum_exclusive=False),
    "dashboard_url": _dashboard_url,
    "username": _text(80),
    "icon": _icon,
    "traceback_lines": _whole(0),
}
