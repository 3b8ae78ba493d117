"""The cron daylight-saving policy, over every transition from 2026 to 2035.

Policy: each matching local time fires exactly once. A local time skipped by a
spring-forward fires at the first instant after the gap; a local time repeated by a
fall-back fires at its first occurrence. Expected fires are computed here from the zone
data alone, independently of the plugin's own mapping.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from sts_triggers.cron import CronTrigger

FIRST_YEAR, LAST_YEAR = 2026, 2035
ZONES = ("America/New_York", "Europe/Berlin", "Australia/Sydney")


@cache
def transitions(zone_name: str) -> tuple[tuple[date, str], ...]:
    """Local days on which the UTC offset changes: (day, "spring" | "fall")."""
    zone = ZoneInfo(zone_name)
    found = []
    day = date(FIRST_YEAR, 1, 1)
    previous = datetime.combine(day, time(12), zone).utcoffset()
    while day.year <= LAST_YEAR:
        day += timedelta(days=1)
        offset = datetime.combine(day, time(12), zone).utcoffset()
        if offset != previous:
            found.append((day, "spring" if offset > previous else "fall"))
            previous = offset
    return tuple(found)


def all_fires(trigger: CronTrigger, zone: ZoneInfo, first: date, stop: date) -> list[datetime]:
    """Every fire from local midnight of ``first`` up to (excluding) local midnight of ``stop``."""
    fire = trigger.first_fire(datetime.combine(first, time(0), zone).astimezone(UTC) - timedelta(microseconds=1))
    limit = datetime.combine(stop, time(0), zone).astimezone(UTC)
    found = []
    while fire is not None and fire < limit:
        found.append(fire)
        fire = trigger.next_fire(fire)
    return found


def assert_strictly_increasing(fires: list[datetime]) -> None:
    assert all(a < b for a, b in pairwise(fires))
    assert len(set(fires)) == len(fires)


@pytest.mark.parametrize(
    ("zone_name", "expression", "skipped_days", "repeated_days"),
    [
        ("America/New_York", "30 2 * * *", 10, 0),  # 02:30 is skipped each March
        ("America/New_York", "30 1 * * *", 0, 10),  # 01:30 is repeated each November
        ("Europe/Berlin", "30 2 * * *", 10, 10),  # skipped in March, repeated in October
        ("Australia/Sydney", "30 2 * * *", 10, 10),  # skipped in October, repeated in April
    ],
)
def test_a_daily_expression_fires_exactly_once_every_local_day_for_ten_years(
    zone_name, expression, skipped_days, repeated_days
):
    zone = ZoneInfo(zone_name)
    wall_time = time(int(expression.split()[1]), int(expression.split()[0]))
    first, stop = date(FIRST_YEAR, 1, 1), date(LAST_YEAR + 1, 1, 1)
    fires = all_fires(CronTrigger(expression, zone), zone, first, stop)

    assert_strictly_increasing(fires)
    days = [first + timedelta(days=n) for n in range((stop - first).days)]
    assert [fire.astimezone(zone).date() for fire in fires] == days

    springs = {day for day, kind in transitions(zone_name) if kind == "spring"}
    expected, skipped, repeated = [], 0, 0
    for day in days:
        earlier = datetime.combine(day, wall_time, zone)  # fold=0
        later = earlier.replace(fold=1)
        if earlier.astimezone(UTC).astimezone(zone).time() != wall_time:
            assert day in springs  # the time does not exist: the end of the gap, 03:00 here
            expected.append(datetime.combine(day, time(3), zone).astimezone(UTC))
            skipped += 1
            continue
        if earlier.astimezone(UTC) != later.astimezone(UTC):
            repeated += 1  # the time happens twice: the first (earlier) one
        expected.append(min(earlier.astimezone(UTC), later.astimezone(UTC)))
    assert fires == expected
    assert (skipped, repeated) == (skipped_days, repeated_days)


@pytest.mark.parametrize("zone_name", ZONES)
def test_every_fifteen_minutes_across_each_transition_neither_repeats_nor_misses(zone_name):
    zone = ZoneInfo(zone_name)
    trigger = CronTrigger("*/15 * * * *", zone)
    days = transitions(zone_name)
    assert len(days) == 20
    for day, _ in days:
        first, stop = day - timedelta(days=1), day + timedelta(days=2)
        fires = all_fires(trigger, zone, first, stop)
        assert_strictly_increasing(fires)
        # Expected: every quarter hour of UTC in the window except the second pass through a
        # repeated local hour (these zones' offsets are whole hours, so the end of each gap,
        # 03:00, is itself a quarter hour and the skipped 02:xx times coincide with it).
        begin = datetime.combine(first, time(0), zone).astimezone(UTC)
        limit = datetime.combine(stop, time(0), zone).astimezone(UTC)
        expected = []
        instant = begin
        while instant < limit:
            if instant.astimezone(zone).fold == 0:
                expected.append(instant)
            instant += timedelta(minutes=15)
        assert fires == expected, f"{zone_name} around {day}"


def test_a_skipped_time_in_a_half_hour_gap_fires_when_the_gap_ends():
    zone = ZoneInfo("Australia/Lord_Howe")  # springs forward 02:00 -> 02:30
    fire = CronTrigger("15 2 * * *", zone).first_fire(datetime(2026, 10, 3, 12, tzinfo=UTC))
    local = fire.astimezone(zone)
    assert (local.date(), local.hour, local.minute) == (date(2026, 10, 4), 2, 30)


def test_several_skipped_times_and_the_match_at_the_gap_end_fire_once():
    zone = ZoneInfo("America/New_York")
    trigger = CronTrigger("0,30 2,3 * * *", zone)
    fires = all_fires(trigger, zone, date(2026, 3, 8), date(2026, 3, 9))
    assert [f.astimezone(zone).strftime("%H:%M %Z") for f in fires] == ["03:00 EDT", "03:30 EDT"]


def test_a_task_added_during_the_second_pass_of_a_repeated_hour_waits_for_the_next_new_time():
    zone = ZoneInfo("America/New_York")
    now = datetime(2026, 11, 1, 6, 20, tzinfo=UTC)  # 01:20 EST, the second 01:20 of the night
    assert CronTrigger("*/15 * * * *", zone).first_fire(now) == datetime(2026, 11, 1, 7, 0, tzinfo=UTC)
    assert CronTrigger("30 1 * * *", zone).first_fire(now) == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)


def test_a_seconds_expression_is_silent_in_the_second_pass_of_a_repeated_hour():
    zone = ZoneInfo("Europe/Berlin")
    trigger = CronTrigger("0 */20 2 * * *", zone)  # 02:00, 02:20, 02:40 local
    fires = all_fires(trigger, zone, date(2026, 10, 25), date(2026, 10, 26))
    assert [f.astimezone(zone).strftime("%H:%M %Z") for f in fires] == ["02:00 CEST", "02:20 CEST", "02:40 CEST"]
