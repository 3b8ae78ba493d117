"""Build the Redis backend from the configuration, and check the ``redis`` config section."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from sts.plugin import (
    ConfigError,
    Delivery,
    DueFire,
    Problem,
    Run,
    check_section,
    count_check,
    did_you_mean,
    duration_check,
    parse_duration,
    safe_url,
)

if TYPE_CHECKING:  # redis-py is imported when a backend is built, not when the plugin loads
    from sts_redis.atomic import AtomicSteps
    from sts_redis.broker import RedisBroker
    from sts_redis.connection import RedisConnection
    from sts_redis.store import RedisStore

#: The ``redis`` config section with its defaults.
DEFAULTS: dict[str, Any] = {
    "url": "redis://127.0.0.1:6379/0",
    "key_prefix": "sts",
    "lease_time": "30s",
    "fire_ttl": "1h",
    "connect_timeout": "5s",
    "socket_timeout": "30s",
    "poll_interval": "5s",
    "max_dead_letters": 10000,
}
DEFAULT_MAX_RUNS_PER_TASK = 1000
_SCHEMES = ("redis", "rediss", "unix")
_PREFIX = re.compile(r"^[A-Za-z0-9_.\-{}]+$")


@attrs.define
class RedisBackend:
    """The ``redis`` backend: a ``RedisStore`` and a ``RedisBroker`` on one connection.

    ``claim_and_enqueue`` and ``record_and_ack`` (``sts_core.interfaces.AtomicSteps``) let the
    engine take a fire's steps, and a finished run's, each in one script (see ``sts_redis.atomic``).
    """

    store: RedisStore
    broker: RedisBroker
    connection: RedisConnection
    steps: AtomicSteps = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        from sts_redis.atomic import AtomicSteps

        self.steps = AtomicSteps(self.store)

    async def claim_and_enqueue(
        self, claim: tuple[DueFire, datetime | None] | None, run: Run, limit: int, at: datetime | None,
        *, version: int | None = None,
    ) -> str:
        """See ``AtomicSteps.claim_and_enqueue``."""
        return await self.steps.claim_and_enqueue(claim, run, limit, at, version=version)

    async def record_and_ack(
        self, run: Run, delivery: Delivery, then: Run | None, at: datetime | None, end_fire: bool, ack: bool = True
    ) -> bool:
        """See ``AtomicSteps.record_and_ack``."""
        return await self.steps.record_and_ack(run, delivery, then, at, end_fire, ack)


def build_backend(config: Any, clock: Any) -> RedisBackend:
    """``factory(config, clock)`` for ``register_backends``; reads only ``config.get(path, default)``.

    Raises ``ConfigError`` naming the key when a setting is invalid. Nothing connects here:
    ``open()`` of the store or broker does, and reports an unreachable server.
    """
    settings = {key: config.get(f"redis.{key}", default) for key, default in DEFAULTS.items()}
    problems = [Problem(f"redis.{key}", message) for key, message in validate_section(settings)]
    max_runs = _optional(config, "history.max_runs_per_task", DEFAULT_MAX_RUNS_PER_TASK, _count, problems)
    max_age = _optional(config, "history.max_age", None, _duration_or_none, problems)
    if problems:
        raise ConfigError(problems)
    from sts_redis.broker import RedisBroker
    from sts_redis.connection import RedisConnection
    from sts_redis.store import RedisStore

    connection = RedisConnection(
        str(settings["url"]),
        connect_timeout=parse_duration(settings["connect_timeout"]),
        socket_timeout=parse_duration(settings["socket_timeout"]) or None,
    )
    prefix = str(settings["key_prefix"])
    store = RedisStore(
        connection,
        clock,
        prefix=prefix,
        max_runs_per_task=max_runs,
        max_age=max_age,
        fire_ttl=parse_duration(settings["fire_ttl"]),
    )
    broker = RedisBroker(
        connection,
        clock,
        prefix=prefix,
        lease_time=parse_duration(settings["lease_time"]),
        max_dead_letters=int(settings["max_dead_letters"]),
        poll_interval=parse_duration(settings["poll_interval"]),
    )
    return RedisBackend(store=store, broker=broker, connection=connection)


def validate_section(section: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems in the ``redis`` section as ``(key_path, message)``, key paths relative to it."""
    return check_section("redis", section, _CHECKS)


def _check_url(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"expected a Redis URL such as redis://127.0.0.1:6379/0, got {value!r}"
    parts = urlsplit(value)
    if parts.scheme not in _SCHEMES:
        return (f"expected a URL starting redis://, rediss:// (TLS) or unix://, got {safe_url(value)!r}"
                + did_you_mean(parts.scheme, _SCHEMES))
    if parts.scheme != "unix":
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            return (f"the port in {safe_url(value)!r} is not a number from 1 to 65535 (characters such as / ? # @ "
                    "in a password must be percent-encoded: / is %2F)")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            return f"the database in {safe_url(value)!r} must be a number such as /0, got /{path}"
    return None


def _check_prefix(value: Any) -> str | None:
    if isinstance(value, str) and _PREFIX.fullmatch(value):
        return None
    return f"expected a key prefix of letters, digits and _.-{{}} such as sts or sts-prod, got {value!r}"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "url": _check_url,
    "key_prefix": _check_prefix,
    "lease_time": duration_check(),
    "fire_ttl": duration_check(),
    "connect_timeout": duration_check(),
    "socket_timeout": duration_check(allow_zero=True),
    "poll_interval": duration_check(),
    "max_dead_letters": count_check(),
}


def _optional(config: Any, path: str, default: Any, convert: Any, problems: list[Problem]) -> Any:
    try:
        return convert(config.get(path, default))
    except ValueError as exc:
        problems.append(Problem(path, str(exc)))
        return None


def _duration_or_none(value: Any) -> float | None:
    """None (or 0) keeps runs of any age."""
    return None if value is None else (parse_duration(value) or None)


def _count(value: Any) -> int | None:
    """None (or 0) keeps any number of runs per task."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number of runs >= 0 (0: unlimited), got {value!r}")
    return value or None
