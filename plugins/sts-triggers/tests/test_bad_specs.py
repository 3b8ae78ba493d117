"""Bad trigger specs are refused with a ValueError that says what was expected."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from sts_triggers.cron import CronTrigger
from sts_triggers.date import DateTrigger
from sts_triggers.delay import DelayTrigger
from sts_triggers.interval import IntervalTrigger

UTC_ZONE = ZoneInfo("UTC")


def refused(factory, spec) -> str:
    with pytest.raises(ValueError) as caught:
        factory(spec, UTC_ZONE)
    return str(caught.value)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("61 * * * *", ["bad minute field '61'", "0-59"]),
        ("* 24 * * *", ["bad hour field '24'", "0-23"]),
        ("* * 0 * *", ["bad day-of-month field '0'", "1-31"]),
        ("0 0 30 2 *", ["bad day-of-month field '30'", "exists in the months"]),
        ("* * * 13 *", ["bad month field '13'", "JAN-DEC"]),
        ("* * * * FUNDAY", ["bad day-of-week field 'FUNDAY'", "SUN-SAT"]),
        ("*/0 * * * *", ["bad minute field '*/0'"]),
        ("5-1 * * * *", ["bad minute field '5-1'"]),
        ("99 * * * * *", ["bad second field '99'"]),
        ("* * * *", ["expected 5 fields", "got 4"]),
        ("* * * * * * *", ["expected 5 fields", "got 7"]),
        ("@reboot", ["unknown cron alias '@reboot'", "@daily"]),
        ("", ["expected a cron expression"]),
        (15, ["expected a cron expression", "15"]),
    ],
)
def test_a_bad_cron_expression_names_the_problem(expression, expected):
    message = refused(CronTrigger.from_spec, {"kind": "cron", "cron": expression})
    for part in expected:
        assert part in message


def test_a_missing_option_is_named():
    assert "needs the option 'cron'" in refused(CronTrigger.from_spec, {"kind": "cron"})
    assert "needs the option 'every'" in refused(IntervalTrigger.from_spec, {"kind": "interval", "every": None})
    assert "needs the option 'at'" in refused(DateTrigger.from_spec, {"kind": "date"})
    assert "needs the option 'delay'" in refused(DelayTrigger.from_spec, {"kind": "delay"})


def test_an_unknown_option_is_named_with_a_suggestion():
    message = refused(IntervalTrigger.from_spec, {"kind": "interval", "evry": 30})
    assert "unknown option 'evry' for an interval trigger (did you mean 'every'?)" in message
    assert "expected: every, start, end" in message


@pytest.mark.parametrize(
    ("every", "expected"),
    [("soon", "expected a duration such as 30s"), (0, "greater than zero"), (-5, "zero or more"), (True, "30s")],
)
def test_a_bad_interval_says_what_a_duration_looks_like(every, expected):
    message = refused(IntervalTrigger.from_spec, {"kind": "interval", "every": every})
    assert "every" in message
    assert expected in message


def test_a_bad_delay_says_what_a_duration_looks_like():
    assert "'delay': expected a duration" in refused(DelayTrigger.from_spec, {"kind": "delay", "delay": "later"})


def test_a_bad_date_says_what_a_date_time_looks_like():
    message = refused(DateTrigger.from_spec, {"kind": "date", "at": "tomorrow"})
    assert "'at': expected an ISO 8601 date-time" in message


def test_a_bad_start_is_named():
    message = refused(CronTrigger.from_spec, {"kind": "cron", "cron": "* * * * *", "start": 12})
    assert "'start': expected an ISO 8601 date-time" in message


def test_end_before_start_is_refused():
    spec = {
        "kind": "interval",
        "every": 30,
        "start": datetime(2026, 2, 1, tzinfo=UTC),
        "end": datetime(2026, 1, 1, tzinfo=UTC),
    }
    assert "'end' (2026-01-01T00:00:00+00:00) must not be before 'start'" in refused(IntervalTrigger.from_spec, spec)


def test_a_date_outside_its_window_is_refused_because_it_would_never_run():
    at = datetime(2026, 6, 1, tzinfo=UTC)
    after_end = {"kind": "date", "at": at, "end": datetime(2026, 5, 1, tzinfo=UTC)}
    before_start = {"kind": "date", "at": at, "start": datetime(2026, 7, 1, tzinfo=UTC)}
    assert "is after 'end'" in refused(DateTrigger.from_spec, after_end)
    assert "is before 'start'" in refused(DateTrigger.from_spec, before_start)


def test_a_long_bad_cron_expression_is_shown_shortened():
    message = refused(CronTrigger.from_spec, {"kind": "cron", "cron": "61 " + "* " * 5000 + "*"})
    assert message.startswith("invalid cron expression '61 * * ")
    assert len(message) < 400
