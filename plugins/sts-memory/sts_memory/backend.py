"""Build the memory backend from the configuration, and check the ``memory`` config section."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from sts.plugin import ConfigError, Delivery, DueFire, Problem, Run, check_section, parse_duration

if TYPE_CHECKING:
    from sts_memory.broker import MemoryBroker
    from sts_memory.store import MemoryStore

#: The ``memory`` config section with its defaults.
DEFAULTS: dict[str, Any] = {"lease_time": "60s"}
DEFAULT_MAX_RUNS_PER_TASK = 1000


@attrs.define
class MemoryBackend:
    """The ``memory`` backend: a ``MemoryStore`` and a ``MemoryBroker`` sharing one clock.

    Both live in this process, so the engine's multi-step moments (claim a fire and queue its
    run; record an outcome and ack it) are one call each (``sts_core.interfaces.AtomicSteps``),
    with nothing to wait for in between: the engine's steps on the hottest path cost one
    coroutine instead of three or four.
    """

    store: MemoryStore
    broker: MemoryBroker

    async def claim_and_enqueue(
        self, claim: tuple[DueFire, datetime | None] | None, run: Run, limit: int, at: datetime | None,
        *, version: int | None = None,
    ) -> str:
        """Claim the due fire (if ``claim``), count it toward ``limit`` and queue ``run``:
        "lost" (the claim failed), "limited" (claimed, but ``limit`` fires are active) or "queued".
        With ``version``, first check that the task is stored in that version: "gone", "changed"."""
        store = self.store
        if version is not None:
            stored = store.current_version(run.task_name)
            if stored != version:
                return "gone" if stored is None else "changed"
        if claim is not None and not store.claim_now(*claim):
            return "lost"
        if not store.begin_fire_now(run.task_name, run.fire_id or run.id, limit):
            return "limited"
        self.broker.enqueue_now(run, at)
        return "queued"

    async def record_and_ack(
        self, run: Run, delivery: Delivery, then: Run | None, at: datetime | None, end_fire: bool, ack: bool = True
    ) -> bool:
        """If ``delivery``'s lease is current: record ``run``, ack it (if ``ack``) queuing ``then``,
        and end its fire (if ``end_fire``); return True. Otherwise do nothing and return False."""
        broker, store = self.broker, self.store
        if not broker.holds(delivery):
            return False
        store.record_now(run)
        if ack:
            broker.ack_now(delivery, then, at)
        elif then is not None:
            broker.enqueue_now(then, at)
        if end_fire and run.fire_id is not None:
            store.end_fire_now(run.task_name, run.fire_id)
        return True


def build_backend(config: Any, clock: Any) -> MemoryBackend:
    """``factory(config, clock)`` for ``register_backends``; reads only ``config.get(path, default)``.

    Raises ``ConfigError`` naming the key when a setting is invalid.
    """
    # Imported here, with asyncio: `sts --help` and `sts plugins` load this module and build nothing.
    from sts_memory.broker import MemoryBroker
    from sts_memory.store import MemoryStore

    lease_time = _setting(config, "memory.lease_time", DEFAULTS["lease_time"], _positive_duration)
    max_runs = _setting(config, "history.max_runs_per_task", DEFAULT_MAX_RUNS_PER_TASK, _optional_count)
    max_age = _setting(config, "history.max_age", None, _optional_duration)
    return MemoryBackend(
        store=MemoryStore(clock, max_runs_per_task=max_runs, max_age=max_age),
        broker=MemoryBroker(clock, lease_time=lease_time),
    )


def validate_section(section: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems in the ``memory`` section as ``(key_path, message)``, key paths relative to it."""
    return check_section("memory", section, {key: _duration_problem for key in DEFAULTS})


def _duration_problem(value: Any) -> str | None:
    try:
        _positive_duration(value)
    except ValueError as exc:
        return str(exc)
    return None


def _setting(config: Any, path: str, default: Any, convert: Any) -> Any:
    value = config.get(path, default)
    try:
        return convert(value)
    except ValueError as exc:
        raise ConfigError([Problem(path, str(exc))]) from None


def _positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration greater than zero such as 60s, got {value!r}")
    return seconds


def _optional_duration(value: Any) -> float | None:
    """None (or 0) keeps runs of any age."""
    if value is None:
        return None
    seconds = parse_duration(value)
    return seconds or None


def _optional_count(value: Any) -> int | None:
    """None (or 0) keeps any number of runs per task."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number of runs >= 0 (0: unlimited), got {value!r}")
    return value or None
