"""The ``rabbitmq`` config section: defaults, checks with key paths, and the broker built from it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import attrs

from sts.plugin import (
    ConfigError,
    Problem,
    check_section,
    count_check,
    did_you_mean,
    duration_check,
    parse_duration,
    safe_url,
)

if TYPE_CHECKING:  # pika and ssl are imported when a broker is built, not when the plugin loads
    import ssl

    import pika

#: The ``rabbitmq`` config section with its defaults.
DEFAULTS: dict[str, Any] = {
    "url": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "prefix": "sts",
    "prefetch": None,
    "lease_time": "30s",
    "heartbeat": "30s",
    "connect_timeout": "5s",
    "confirm_timeout": "30s",
    "max_reconnect_delay": "10s",
    "max_dead_letters": 10000,
    "ca_file": None,
    "cert_file": None,
    "key_file": None,
}
_SCHEMES = ("amqp", "amqps")
_PREFIX = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")


@attrs.frozen
class RabbitSettings:
    """The checked ``rabbitmq`` section, durations in seconds."""

    url: str
    prefix: str = "sts"
    prefetch: int = 100
    lease_time: float = 30.0
    heartbeat: float = 30.0
    connect_timeout: float = 5.0
    confirm_timeout: float = 30.0
    max_reconnect_delay: float = 10.0
    max_dead_letters: int = 10000
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @property
    def where(self) -> str:
        """The server and virtual host, for messages: never the password."""
        parts = urlsplit(self.url)
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return f"{parts.scheme}://{parts.hostname}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)} " \
               f"(vhost {vhost})"

    def parameters(self) -> pika.URLParameters:
        """pika's connection parameters: the URL (TLS for amqps), with the heartbeat and timeouts
        taken from the settings unless the URL sets them."""
        import pika

        parameters = pika.URLParameters(self.url)
        query = urlsplit(self.url).query
        if "heartbeat" not in query:
            parameters.heartbeat = max(1, round(self.heartbeat))
        if "socket_timeout" not in query:
            parameters.socket_timeout = self.connect_timeout
        if "blocked_connection_timeout" not in query:
            # A server out of memory or disk blocks publishers: give up on the connection after
            # this and reconnect, rather than hang every publish.
            parameters.blocked_connection_timeout = self.confirm_timeout
        if parameters.ssl_options is not None and "ssl_options" not in query:
            parameters.ssl_options = pika.SSLOptions(self.tls_context(), server_hostname=urlsplit(self.url).hostname)
        parameters.connection_attempts = 1
        parameters.client_properties = {"connection_name": f"sts {self.prefix}"}
        return parameters


    def tls_context(self) -> ssl.SSLContext:
        """For amqps: verify the server (hostname included) against the system's CAs or
        ``ca_file``, and present ``cert_file`` if set. Raises ``ConfigError`` naming the key of
        a file that cannot be used."""
        import ssl

        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError([Problem("rabbitmq.ca_file", f"not a usable CA certificate file: {exc}")]) from None
        if self.cert_file:
            try:
                context.load_cert_chain(self.cert_file, self.key_file, password=_no_passphrase)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise ConfigError([Problem("rabbitmq.cert_file", f"the certificate and key_file cannot be used "
                                                                 f"together: {exc}")]) from None
        return context


def _no_passphrase() -> str:
    # Without this, OpenSSL would ask for the passphrase of an encrypted key on the terminal.
    raise ValueError("the key file is encrypted; give an unencrypted key_file (keep it readable only by STS)")


def build_broker(config: Any, clock: Any) -> Any:
    """``factory(config, clock)`` for ``register_brokers``; reads only ``config.get(path, default)``.

    Raises ``ConfigError`` naming the key when a setting is invalid. Nothing connects here.
    """
    from sts_rabbitmq.broker import RabbitBroker

    section = {key: config.get(f"rabbitmq.{key}", default) for key, default in DEFAULTS.items()}
    problems = [Problem(f"rabbitmq.{key}", message) for key, message in validate_section(section)]
    if problems:
        raise ConfigError(problems)
    prefetch = section["prefetch"]
    if prefetch is None:
        prefetch = config.get("executor.concurrency", 100)
    settings = RabbitSettings(
        url=str(section["url"]),
        prefix=str(section["prefix"]),
        prefetch=int(prefetch),
        lease_time=parse_duration(section["lease_time"]),
        heartbeat=parse_duration(section["heartbeat"]),
        connect_timeout=parse_duration(section["connect_timeout"]),
        confirm_timeout=parse_duration(section["confirm_timeout"]),
        max_reconnect_delay=parse_duration(section["max_reconnect_delay"]),
        max_dead_letters=int(section["max_dead_letters"]),
        ca_file=section["ca_file"],
        cert_file=section["cert_file"],
        key_file=section["key_file"],
    )
    return RabbitBroker(settings, clock)  # builds the connection parameters: a TLS file problem is a ConfigError


def validate_section(section: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems in the ``rabbitmq`` section as ``(key_path, message)``, key paths relative to it."""
    problems = check_section("rabbitmq", section, _CHECKS)
    url = section.get("url")
    tls = isinstance(url, str) and urlsplit(url).scheme == "amqps"
    for key in ("ca_file", "cert_file", "key_file"):
        if section.get(key) is not None and not tls:
            problems.append((key, "is used only with an amqps:// URL (TLS); the url is not one"))
    if section.get("key_file") is not None and section.get("cert_file") is None:
        problems.append(("key_file", "is the key of cert_file, which is not set"))
    return problems


def _check_url(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"expected an AMQP URL such as amqp://user:${{RABBITMQ_PASSWORD}}@host:5672/%2F, got {value!r}"
    parts = urlsplit(value)
    if parts.scheme not in _SCHEMES:
        return (f"expected a URL starting amqp:// or amqps:// (TLS), got {safe_url(value)!r}"
                + did_you_mean(parts.scheme, _SCHEMES))
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return (f"the port in {safe_url(value)!r} is not a number from 1 to 65535 (characters such as / ? # @ "
                "in a password must be percent-encoded: / is %2F)")
    if not parts.hostname:
        return f"the URL {safe_url(value)!r} names no host"
    import pika

    try:
        pika.URLParameters(value)
    except (ValueError, TypeError) as exc:
        return f"pika cannot use the URL {safe_url(value)!r}: {exc}"
    return None


def _check_prefix(value: Any) -> str | None:
    if isinstance(value, str) and _PREFIX.fullmatch(value) and len(value) <= 200:
        return None
    return (f"expected a name prefix of letters, digits, _ and - (dots between words) such as sts or sts-prod, "
            f"got {value!r}")


def _check_prefetch(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return None
    return f"expected a whole number from 1 to 65535, or null for executor.concurrency, got {value!r}"


def _check_file(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        return f"expected the path of a PEM file, or null, got {value!r}"
    if not os.path.isfile(value):
        return f"no such file: {value}"
    return None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "url": _check_url,
    "prefix": _check_prefix,
    "prefetch": _check_prefetch,
    "lease_time": duration_check(),
    "heartbeat": duration_check(),
    "connect_timeout": duration_check(),
    "confirm_timeout": duration_check(),
    "max_reconnect_delay": duration_check(),
    "max_dead_letters": count_check(),
    "ca_file": _check_file,
    "cert_file": _check_file,
    "key_file": _check_file,
}
