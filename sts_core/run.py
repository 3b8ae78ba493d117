"""``Run``: one attempt of a task, from being scheduled to its outcome, and its ids.

Plain data (attrs) that serialises to JSON-safe data (``to_dict``/``from_dict``), so a run
crosses process boundaries and lives in any store without pickle.
"""

from __future__ import annotations

import enum
import itertools
import json
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs


class RunState(enum.StrEnum):
    """The life of a run record."""

    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    #: Its worker was lost (crashed, or stalled past its lease); the run was delivered again.
    LOST = "lost"
    #: Finished after its lease was lost: another worker was given the run too.
    DUPLICATE = "duplicate"
    #: Delivered more often than ``executor.max_redeliveries`` allows, or undeliverable:
    #: moved to the broker's dead-letter queue without running again.
    POISON = "poison"

    @property
    def is_final(self) -> bool:
        """True once the record will not change again."""
        return self not in (RunState.SCHEDULED, RunState.RUNNING)


FAILED_STATES = frozenset({RunState.FAILED, RunState.TIMED_OUT, RunState.POISON})

#: The largest return value recorded as a value (its JSON text, in bytes); larger ones as a repr.
RESULT_JSON_LIMIT = 65536
#: How much of the repr of a return value that is not JSON data (or too large) is recorded.
RESULT_REPR_LIMIT = 500


def recordable_result(value: Any) -> Any:
    """What a run records of its function's return value: the value as JSON data (tuples become
    lists, as they would in any store), when it is JSON data of at most ``RESULT_JSON_LIMIT``
    bytes that UTF-8 can encode; otherwise its ``repr``, cut to ``RESULT_REPR_LIMIT`` characters."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")  # an unpaired surrogate (os.fsdecode of a bad file name) cannot be stored
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        text = None
    if text is not None and len(text) <= RESULT_JSON_LIMIT and _keys_survive(value):
        return json.loads(text)
    shown = repr(value)
    return shown if len(shown) <= RESULT_REPR_LIMIT else shown[:RESULT_REPR_LIMIT] + "…"


def _keys_survive(value: Any) -> bool:
    """False when JSON would turn a mapping's non-string keys into strings (the value would change)."""
    if isinstance(value, Mapping):
        return all(isinstance(key, str) and _keys_survive(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return all(_keys_survive(item) for item in value)
    return True


_RUN_PREFIX = secrets.token_hex(4)
_run_counter = itertools.count(1)


def new_run_id() -> str:
    """A run id unique across processes: a random per-process prefix and a counter."""
    return f"{_RUN_PREFIX}-{next(_run_counter):x}"


def fire_id(task_name: str, scheduled_for: datetime) -> str:
    """The idempotent id of one fire of a task: the same fire always gets the same id."""
    return f"{task_name}@{scheduled_for.isoformat()}"


@attrs.define(slots=True, eq=False)
class Run:
    """One attempt of a task, from being scheduled to its outcome."""

    id: str
    task_name: str
    task_version: int
    scheduled_for: datetime
    attempt: int = 1
    state: RunState = RunState.SCHEDULED
    reason: str = "schedule"
    fire_id: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration: float | None = None
    #: What the function returned: the value itself when it is JSON data (at most
    #: ``RESULT_JSON_LIMIT`` bytes encoded), else its ``repr`` cut to ``RESULT_REPR_LIMIT`` characters.
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    output: str | None = None
    worker: str | None = None
    retry_at: datetime | None = None
    #: A manual fire queued while ``max_instances`` runs of its task were active: a worker starts it
    #: once one of them ends (until then it is put back, never skipped).
    waits_for_instance: bool = False
    #: Run alone on its worker, because a worker was lost while an earlier attempt ran (see
    #: ``sts_core.isolation``): a loss of this attempt counts toward ``executor.max_redeliveries``.
    isolated: bool = False

    @property
    def hit_timeout(self) -> bool:
        """True when STS stopped this attempt at its task's ``timeout``: the state is ``timed_out``,
        or ``retrying`` after a timeout. STS records its own timeouts as ``TimeoutError`` without a
        traceback; a ``TimeoutError`` the task raised itself has one, so it does not count."""
        if self.state is RunState.TIMED_OUT:
            return True
        return self.state is RunState.RETRYING and self.error_type == "TimeoutError" and self.traceback is None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data. ``waits_for_instance`` and ``isolated`` are left out when false, so
        that processes of an earlier version, which do not know them, can still read the records and
        messages."""
        data = attrs.asdict(self, recurse=False)
        data["state"] = self.state.value
        for key in ("scheduled_for", "created_at", "started_at", "ended_at", "retry_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        if not self.waits_for_instance:
            del data["waits_for_instance"]
        if not self.isolated:
            del data["isolated"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        """The inverse of ``to_dict``. Keys it does not know (written by a later version) are ignored."""
        values = {key: value for key, value in data.items() if key in _RUN_FIELDS}
        values["state"] = RunState(values["state"])
        for key in ("scheduled_for", "created_at", "started_at", "ended_at", "retry_at"):
            if values.get(key) is not None:
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)


_RUN_FIELDS = frozenset(field.name for field in attrs.fields(Run))
