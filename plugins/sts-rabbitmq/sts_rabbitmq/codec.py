"""Runs as AMQP messages: a JSON body (never pickle) and the headers that carry a run's delivery
history from one copy of its message to the next."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import attrs
import pika

from sts.plugin import Run

CONTENT_TYPE = "application/json"
MESSAGE_TYPE = "sts.run"
#: Deliveries of the run before this copy of its message was published (a hand-back publishes a
#: new copy; the server's own ``x-delivery-count`` counts only the deliveries of one copy).
DELIVERIES = "sts-deliveries"
#: How many of those deliveries ended with the worker handing the run back (graceful stop).
HANDED_BACK = "sts-handed-back"
#: Epoch milliseconds before which the run must not run; set only on a run delayed beyond the
#: ladder's reach, which goes round again when it arrives early.
NOT_BEFORE = "sts-not-before"
#: On a dead-lettered message: why, and when (epoch milliseconds).
REASON = "sts-reason"
DEAD_AT = "sts-dead-at"


@attrs.frozen
class Envelope:
    """What a message carries besides the run."""

    deliveries: int = 0
    handed_back: int = 0
    not_before_ms: int | None = None


def encode_run(run: Run) -> bytes:
    """The message body of ``run``."""
    return json.dumps(run.to_dict(), separators=(",", ":")).encode()


def decode_run(body: bytes) -> Run:
    """The run in a message body; raises ``ValueError`` saying what is wrong with it."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"the body is JSON {type(data).__name__}, not an object")
    try:
        return Run.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the body is not a run: {type(exc).__name__}: {exc}") from None


def properties(run: Run, envelope: Envelope, **headers: Any) -> pika.BasicProperties:
    """Persistent message properties for ``run`` (its id as ``message_id``)."""
    values: dict[str, Any] = {}
    if envelope.deliveries:
        values[DELIVERIES] = envelope.deliveries
    if envelope.handed_back:
        values[HANDED_BACK] = envelope.handed_back
    if envelope.not_before_ms is not None:
        values[NOT_BEFORE] = envelope.not_before_ms
    values.update(headers)
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=run.id,
        type=MESSAGE_TYPE,
        headers=values or None,
    )


def envelope_of(props: pika.BasicProperties) -> tuple[Envelope, int]:
    """The envelope of a delivered message and how many times the server delivered this copy
    before (its ``x-delivery-count``, set by quorum queues on redelivery)."""
    headers = props.headers or {}
    not_before = headers.get(NOT_BEFORE)
    envelope = Envelope(
        deliveries=_count(headers.get(DELIVERIES)),
        handed_back=_count(headers.get(HANDED_BACK)),
        not_before_ms=not_before if isinstance(not_before, int) else None,
    )
    return envelope, _count(headers.get("x-delivery-count"))


def dead_letter_entry(body: bytes, props: pika.BasicProperties) -> dict[str, Any]:
    """A dead-lettered message as ``Broker.dead_letters`` lists it: id, reason, payload, at."""
    headers = props.headers or {}
    try:
        payload: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        payload = body.decode(errors="replace")
    dead_at = headers.get(DEAD_AT)
    at = datetime.fromtimestamp(dead_at / 1000, UTC).isoformat() if isinstance(dead_at, int) else None
    reason = headers.get(REASON)
    return {
        "id": props.message_id,
        "reason": reason.decode(errors="replace") if isinstance(reason, bytes) else reason,
        "payload": payload,
        "at": at,
    }


def epoch_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0
