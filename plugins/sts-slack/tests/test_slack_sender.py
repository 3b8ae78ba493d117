"""Delivery: retries with backoff, Retry-After, giving up, a bounded queue, a hanging Slack,
and no webhook URL in any log line (slack_sdk's DEBUG logging included)."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest
from sts_slack_helpers import T0, make_run, make_task

from sts.plugin import events as ev
from sts_slack.sender import Outgoing, Sender
from sts_slack.testing import FakeSlack

PAYLOAD = {"text": "hello", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]}


def make_sender(**options: Any) -> tuple[Sender, list[float]]:
    waits: list[float] = []
    settings = {"timeout": 2.0, "max_attempts": 3, "backoff": 0.5, "wait": lambda s: waits.append(s) or False}
    sender = Sender(**{**settings, **options})
    return sender, waits


def deliver(sender: Sender, *items: Outgoing, timeout: float = 10.0) -> None:
    """Send ``items`` and wait until each was delivered or given up, then close."""
    sender.start()
    for item in items:
        sender.submit(item)
    deadline = time.monotonic() + timeout
    while sender.sent + sender.failed + sender.skipped < len(items) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sender.sent + sender.failed + sender.skipped == len(items)
    sender.close(1.0)


def message(url: str, label: str = "failure alert for task etl") -> Outgoing:
    return Outgoing("default", url, PAYLOAD, label)


def test_a_429_is_retried_after_its_retry_after(slack):
    slack.answer((429, 7))
    sender, waits = make_sender()
    deliver(sender, message(slack.url()))
    assert len(slack.payloads) == 2 and sender.sent == 1
    assert waits == [7.0]


def test_retry_after_is_capped(slack):
    slack.answer((429, 3600))
    sender, waits = make_sender(max_retry_after=60.0)
    deliver(sender, message(slack.url()))
    assert waits == [60.0] and sender.sent == 1


def test_a_5xx_is_retried_with_exponential_backoff_then_given_up_with_a_log_line_without_the_url(slack, caplog):
    slack.answer(then=500)
    sender, waits = make_sender(max_attempts=3, backoff=0.5)
    with caplog.at_level(logging.INFO, logger="sts.slack"):
        deliver(sender, message(slack.url()))
    assert len(slack.payloads) == 3
    assert waits == [0.5, 1.0]
    assert sender.failed == 1 and sender.sent == 0
    [gave_up] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert gave_up.name == "sts.slack"
    assert gave_up.getMessage() == ("slack: could not deliver the failure alert for task etl via webhook 'default' "
                                    "after 3 attempt(s): HTTP 500 internal_error; the alert is dropped")
    assert "secret-token" not in caplog.text and "127.0.0.1" not in caplog.text


def test_a_4xx_other_than_429_is_not_retried(slack, caplog):
    slack.answer(404)
    sender, waits = make_sender()
    deliver(sender, message(slack.url()))
    assert len(slack.payloads) == 1 and waits == [] and sender.failed == 1
    assert "Slack refused the failure alert for task etl via webhook 'default': HTTP 404 invalid_payload" in caplog.text


def test_a_connection_error_is_retried_and_logged_without_the_url(caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T0STS/B0X/secret-token-refused"
    sender, waits = make_sender(max_attempts=2)
    deliver(sender, message(url))
    assert waits == [0.5] and sender.failed == 1
    assert "after 2 attempt(s): URLError: [Errno 111] Connection refused" in caplog.text
    assert "secret-token" not in caplog.text


def test_submit_never_waits_for_a_hanging_slack_and_close_is_bounded():
    with FakeSlack(hang_seconds=30) as hanging:
        hanging.answer(then="hang")
        sender, _ = make_sender(timeout=0.3, max_attempts=2)
        sender.start()
        began = time.perf_counter()
        for index in range(50):
            sender.submit(message(hanging.url(), f"alert {index}"))
        assert time.perf_counter() - began < 0.05
        began = time.perf_counter()
        sender.close(grace=0.5)
        assert time.perf_counter() - began < 0.5 + 0.3 + 1.5


def test_close_gives_up_retries_that_would_outlast_the_grace(slack, caplog):
    slack.answer((429, 30))
    sender = Sender(timeout=2.0, max_attempts=3, backoff=0.5)  # the real, interruptible wait
    sender.start()
    sender.submit(message(slack.url()))
    slack.wait_for(1)
    began = time.perf_counter()
    sender.close(grace=0.5)
    assert time.perf_counter() - began < 2.0
    assert "no time left to retry before shutdown" in caplog.text or "stopped while waiting" in caplog.text


def test_a_full_queue_drops_the_oldest_and_counts_the_drops(caplog):
    sender, _ = make_sender(max_queue=2)  # not started: nothing leaves the queue
    for index in range(5):
        sender.submit(message("http://127.0.0.1:9/x", f"alert {index}"))
    assert sender.pending == 2 and sender.dropped == 3
    assert [r.getMessage() for r in caplog.records] == [
        "slack: the send queue is full (2); dropped the oldest message (alert 0); 1 dropped so far",
        "slack: the send queue is full (2); dropped the oldest message (alert 1); 2 dropped so far",
    ]


def test_the_webhook_url_is_in_no_log_record_even_with_slack_sdk_at_debug(make_plugin, slack, caplog):
    caplog.set_level(logging.DEBUG)  # root, sts.slack and slack_sdk.* all at DEBUG
    harness = make_plugin(throttle=0, max_attempts=2, timeout="300ms")
    slack.answer("ok", 500, 500, (429, 1), "hang", "hang", 404)
    for index in range(5):
        harness.emit(ev.RunFailed(T0, make_run(id=f"r{index}"), make_task()))
    harness.stop()
    assert len(slack.payloads) >= 5
    sdk_records = [r for r in caplog.records if r.name.startswith("slack_sdk")]
    assert any("Sending a request - url: ***," in r.getMessage() for r in sdk_records)  # it did log, masked
    for record in caplog.records:
        assert "secret-token" not in record.getMessage(), record.name
    assert "secret-token" not in caplog.text


@pytest.mark.parametrize("answer", ["ok", 500])
def test_each_attempt_posts_the_same_json_body(slack, answer):
    slack.answer(answer)
    sender, _ = make_sender()
    deliver(sender, message(slack.url()))
    assert all(p == PAYLOAD for p in slack.payloads)
    assert all(r.headers["Content-Type"].startswith("application/json") for r in slack.requests)


def test_a_failing_webhook_is_paused_so_it_does_not_hold_up_the_others(slack, caplog):
    with socket.socket() as probe:  # a port nobody listens on: each message to it fails
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = f"http://127.0.0.1:{port}/services/T0STS/B0X/secret-token-dead"
    now = [0.0]
    sender, _ = make_sender(max_attempts=1, breaker_failures=2, breaker_cooldown=60.0, monotonic=lambda: now[0])
    sender.start()

    def send(*items: Outgoing) -> None:
        target = sender.sent + sender.failed + sender.skipped + len(items)
        for item in items:
            sender.submit(item)
        deadline = time.monotonic() + 10
        while sender.sent + sender.failed + sender.skipped < target and time.monotonic() < deadline:
            time.sleep(0.005)

    to_dead = Outgoing("ops", dead, PAYLOAD, "failure alert for task etl")
    send(to_dead, to_dead)  # two in a row failed: the breaker opens
    send(to_dead, to_dead, to_dead, message(slack.url()))
    assert (sender.failed, sender.skipped, sender.sent) == (2, 3, 1)  # dropped without trying; the other went out
    now[0] = 61.0  # the cooldown is over: the next message tries the webhook again, and fails
    send(to_dead, to_dead)
    assert (sender.failed, sender.skipped) == (3, 4)
    sender.close(1.0)
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    errors = [text for text in messages if "in a row" in text or "while it was failing" in text]
    paused = "via webhook 'ops' were not delivered; messages to it are dropped for the next 60s"
    assert errors == [
        f"slack: 2 message(s) in a row {paused}",
        "slack: 3 message(s) via webhook 'ops' were dropped while it was failing",
        f"slack: 3 message(s) in a row {paused}",
        "slack: 1 message(s) via webhook 'ops' were dropped while it was failing",
    ]
    assert "secret-token" not in caplog.text
