"""Specification of the one-shot triggers: date and delay."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sts_triggers.date import DateTrigger
from sts_triggers.delay import DelayTrigger

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def date(at, zone=UTC_ZONE, **window):
    return DateTrigger.from_spec({"kind": "date", "at": at, **window}, zone)


def delay(seconds, **window):
    return DelayTrigger.from_spec({"kind": "delay", "delay": seconds, **window}, UTC_ZONE)


def test_date_fires_at_its_time_and_never_again():
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    trigger = date(at)
    assert trigger.first_fire(NOW) == at
    assert trigger.next_fire(at) is None


def test_date_in_the_past_is_still_returned_for_the_misfire_policy():
    at = NOW - timedelta(days=3)
    assert date(at).first_fire(NOW) == at


def test_date_naive_at_is_a_local_time_in_the_task_timezone():
    assert date(datetime(2026, 12, 1, 9, 30), BERLIN).first_fire(NOW) == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def test_date_naive_at_in_a_spring_forward_gap_fires_when_the_gap_ends():
    at = date(datetime(2026, 3, 8, 2, 30), ZoneInfo("America/New_York")).first_fire(NOW)
    assert at == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT


def test_date_accepts_iso_text():
    assert date("2026-12-01T09:30:00+01:00").first_fire(NOW) == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def test_date_describe_shows_the_time_in_the_task_timezone():
    assert date(datetime(2026, 12, 1, 9, 30, tzinfo=UTC)).describe() == "at 2026-12-01 09:30 UTC"
    assert date(datetime(2026, 12, 1, 9, 30), BERLIN).describe() == "at 2026-12-01 09:30 Europe/Berlin"
    assert date(datetime(2026, 12, 1, 9, 30, 15, tzinfo=UTC)).describe() == "at 2026-12-01 09:30:15 UTC"


def test_delay_fires_once_after_the_delay():
    trigger = delay(10.0)
    first = trigger.first_fire(NOW)
    assert first == NOW + timedelta(seconds=10)
    assert trigger.next_fire(first) is None


def test_delay_is_not_before_start_and_never_after_end():
    start = NOW + timedelta(hours=1)
    assert delay(10.0, start=start).first_fire(NOW) == start
    assert delay(10.0, end=NOW + timedelta(seconds=5)).first_fire(NOW) is None


def test_delay_describe():
    assert delay(10.0).describe() == "after 10s"
    assert delay("2m").describe() == "after 2m"
