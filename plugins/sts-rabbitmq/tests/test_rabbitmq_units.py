"""The delay ladder's routes and the message codec, without a server."""

from __future__ import annotations

import json
import re

import pika
import pytest

from sts.plugin import Run, RunState
from sts_core.testing import FakeClock
from sts_core.testing.contracts import _run
from sts_rabbitmq import codec
from sts_rabbitmq.topology import LEVELS, MAX_DELAY_MS, Names, delay_queue_arguments, delay_route, level_pattern


def _matches(pattern: str, key: str) -> bool:
    """AMQP topic matching for patterns of ``*`` and literal words (what the ladder uses)."""
    return re.fullmatch(r"\.".join("[^.]+" if word == "*" else re.escape(word) for word in pattern.split(".")),
                        key) is not None


@pytest.mark.parametrize("delay", [1, 2, 7, 1000, 1500, 65_535, 86_400_000, MAX_DELAY_MS])
def test_a_delay_passes_through_exactly_the_levels_of_its_one_bits(delay: int) -> None:
    entry, key = delay_route(delay)
    assert entry == delay.bit_length() - 1 and len(key.split(".")) == LEVELS
    waited = 0
    for level in range(entry, -1, -1):  # the route down the ladder from the entry level
        into_queue = _matches(level_pattern(level, "1"), key)
        passed_on = _matches(level_pattern(level, "0"), key)
        assert into_queue != passed_on
        if into_queue:
            waited += delay_queue_arguments(Names("p"), level)["x-message-ttl"]  # type: ignore[operator]
    assert waited == delay


@pytest.mark.parametrize("delay", [0, -5, MAX_DELAY_MS + 1])
def test_a_delay_outside_the_ladder_is_refused(delay: int) -> None:
    with pytest.raises(ValueError, match="a delay must be 1 to"):
        delay_route(delay)


def test_each_level_dead_letters_to_the_one_below_and_level_zero_to_delivery() -> None:
    names = Names("sts-prod")
    assert delay_queue_arguments(names, 5)["x-dead-letter-exchange"] == "sts-prod.delay.4"
    assert delay_queue_arguments(names, 0)["x-dead-letter-exchange"] == "sts-prod.deliver"
    assert delay_queue_arguments(names, 0)["x-dead-letter-strategy"] == "at-least-once"


def test_a_run_survives_the_codec_and_carries_its_delivery_history() -> None:
    run = _run("a", FakeClock().now(), state=RunState.SCHEDULED, attempt=2)
    props = codec.properties(run, codec.Envelope(deliveries=2, handed_back=1))
    assert props.delivery_mode == 2 and props.message_id == run.id and props.content_type == "application/json"
    assert codec.decode_run(codec.encode_run(run)).to_dict() == run.to_dict()
    props.headers["x-delivery-count"] = 3
    envelope, redelivered = codec.envelope_of(props)
    assert (envelope.deliveries, envelope.handed_back, redelivered) == (2, 1, 3)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\x80\x04pickle", "the body is not JSON"),
        (b"[1, 2]", "the body is JSON list, not an object"),
        (json.dumps({"id": "x"}).encode(), "the body is not a run: KeyError"),
    ],
)
def test_a_body_that_is_not_a_run_is_refused_with_the_reason(body: bytes, expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        codec.decode_run(body)


def test_a_dead_letter_entry_has_its_id_reason_payload_and_time() -> None:
    run = _run("a", FakeClock().now())
    props = pika.BasicProperties(message_id=run.id, headers={codec.REASON: b"poison", codec.DEAD_AT: 1_795_000_000_000})
    entry = codec.dead_letter_entry(codec.encode_run(run), props)
    assert entry["id"] == run.id and entry["reason"] == "poison"
    assert Run.from_dict(entry["payload"]).id == run.id
    assert entry["at"].startswith("2026-11-18T")
