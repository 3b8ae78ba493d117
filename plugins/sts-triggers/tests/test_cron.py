"""Specification of the cron trigger (daylight-saving behaviour: test_cron_dst.py)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sts_triggers.cron import CronTrigger

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 5, 4, 10, 2, 30, tzinfo=UTC)  # a Monday


def cron(expression, zone=UTC_ZONE, **window):
    return CronTrigger.from_spec({"kind": "cron", "cron": expression, **window}, zone)


def fires(trigger, now, count):
    found = [trigger.first_fire(now)]
    while len(found) < count:
        found.append(trigger.next_fire(found[-1]))
    return found


def test_first_fire_is_the_first_match_after_now():
    assert cron("*/5 * * * *").first_fire(NOW) == datetime(2026, 5, 4, 10, 5, tzinfo=UTC)


def test_a_match_exactly_at_now_is_not_the_first_fire():
    now = datetime(2026, 5, 4, 10, 5, tzinfo=UTC)
    assert cron("*/5 * * * *").first_fire(now) == datetime(2026, 5, 4, 10, 10, tzinfo=UTC)


def test_next_fire_is_the_first_match_strictly_after_the_previous_fire():
    assert fires(cron("0,30 * * * *"), NOW, 3) == [
        datetime(2026, 5, 4, 10, 30, tzinfo=UTC),
        datetime(2026, 5, 4, 11, 0, tzinfo=UTC),
        datetime(2026, 5, 4, 11, 30, tzinfo=UTC),
    ]


def test_fires_are_aware_utc_datetimes():
    fire = cron("0 9 * * *", BERLIN).first_fire(NOW)
    assert fire.tzinfo is UTC


def test_the_expression_is_evaluated_in_the_task_timezone():
    trigger = cron("0 9 * * *", BERLIN)
    assert trigger.first_fire(NOW) == datetime(2026, 5, 5, 7, 0, tzinfo=UTC)  # CEST
    assert trigger.first_fire(datetime(2026, 12, 1, tzinfo=UTC)) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # CET


def test_a_match_at_start_is_the_first_fire():
    start = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    assert cron("0 * * * *", start=start).first_fire(NOW) == start


def test_no_fire_comes_before_start():
    start = datetime(2026, 6, 1, 0, 10, tzinfo=UTC)
    trigger = cron("0 * * * *", start=start)
    assert trigger.first_fire(NOW) == datetime(2026, 6, 1, 1, 0, tzinfo=UTC)
    assert trigger.next_fire(NOW) == datetime(2026, 6, 1, 1, 0, tzinfo=UTC)


def test_nothing_fires_after_end():
    end = datetime(2026, 5, 4, 11, 0, tzinfo=UTC)
    trigger = cron("0 * * * *", end=end)
    assert trigger.first_fire(NOW) == end
    assert trigger.next_fire(end) is None


def test_six_fields_put_seconds_first():
    assert fires(cron("*/20 * * * * *"), NOW, 3) == [
        datetime(2026, 5, 4, 10, 2, 40, tzinfo=UTC),
        datetime(2026, 5, 4, 10, 3, 0, tzinfo=UTC),
        datetime(2026, 5, 4, 10, 3, 20, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", datetime(2026, 5, 4, 11, 0, tzinfo=UTC)),
        ("@daily", datetime(2026, 5, 5, 0, 0, tzinfo=UTC)),
        ("@midnight", datetime(2026, 5, 5, 0, 0, tzinfo=UTC)),
        ("@weekly", datetime(2026, 5, 10, 0, 0, tzinfo=UTC)),
        ("@monthly", datetime(2026, 6, 1, 0, 0, tzinfo=UTC)),
        ("@yearly", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("@annually", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("@Daily", datetime(2026, 5, 5, 0, 0, tzinfo=UTC)),
    ],
)
def test_aliases_stand_for_their_expressions(alias, expected):
    assert cron(alias).first_fire(NOW) == expected


def test_names_and_ranges_of_weekdays_and_months_are_understood():
    friday = datetime(2026, 5, 8, 17, 0, tzinfo=UTC)
    trigger = cron("0 9 * * mon-fri")
    assert [f.weekday() for f in fires(trigger, friday, 3)] == [0, 1, 2]
    assert cron("0 0 1 jan *").first_fire(NOW) == datetime(2027, 1, 1, tzinfo=UTC)


def test_last_day_of_month_and_nth_weekday():
    assert cron("0 0 L * *").first_fire(NOW) == datetime(2026, 5, 31, tzinfo=UTC)
    assert cron("0 0 * * MON#2").first_fire(NOW) == datetime(2026, 5, 11, tzinfo=UTC)


def test_describe_shows_the_expression_and_the_timezone():
    assert cron("*/5  *  * * *", BERLIN).describe() == "cron */5 * * * * (Europe/Berlin)"
    assert cron("@daily").describe() == "cron @daily (UTC)"


def test_consecutive_calls_give_what_a_fresh_trigger_gives():
    zone = ZoneInfo("America/New_York")
    reused = cron("*/7 1-3 * * *", zone)
    fire = datetime(2026, 3, 7, tzinfo=UTC)
    for _ in range(200):
        expected = cron("*/7 1-3 * * *", zone).next_fire(fire)
        assert reused.next_fire(fire) == expected
        fire = expected
    assert reused.next_fire(NOW) == cron("*/7 1-3 * * *", zone).next_fire(NOW)


def test_a_rare_expression_finds_its_match_decades_ahead():
    # the fifth Monday of February needs a 29 February that is a Monday
    assert cron("0 0 * 2 MON#5").first_fire(NOW) == datetime(2044, 2, 29, tzinfo=UTC)


def test_a_match_beyond_end_exhausts_the_trigger_and_a_later_call_still_works():
    trigger = cron("0 0 1 * *", end=datetime(2026, 5, 20, tzinfo=UTC))
    assert trigger.first_fire(NOW) is None
    assert trigger.next_fire(NOW - timedelta(days=10)) == datetime(2026, 5, 1, tzinfo=UTC)
