"""Specification of the interval trigger."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sts_triggers.interval import IntervalTrigger

NOW = datetime(2026, 5, 4, 10, 1, 10, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def build(**spec):
    return IntervalTrigger.from_spec({"kind": "interval", **spec}, ZoneInfo("UTC"))


def test_without_start_the_first_fire_is_one_interval_after_now():
    assert build(every=30.0).first_fire(NOW) == NOW + timedelta(seconds=30)


def test_a_future_start_is_the_first_fire():
    start = NOW + timedelta(hours=2)
    assert build(every=30.0, start=start).first_fire(NOW) == start


def test_a_past_start_aligns_the_first_fire_on_start_plus_whole_intervals():
    start = datetime(2026, 5, 4, 10, 0, 0, tzinfo=UTC)
    assert build(every=30.0, start=start).first_fire(NOW) == datetime(2026, 5, 4, 10, 1, 30, tzinfo=UTC)


def test_an_aligned_now_is_itself_the_first_fire():
    start = datetime(2026, 5, 4, 10, 0, 0, tzinfo=UTC)
    now = datetime(2026, 5, 4, 10, 1, 30, tzinfo=UTC)
    assert build(every=30.0, start=start).first_fire(now) == now


def test_next_fire_adds_the_interval_to_the_scheduled_time_without_drift():
    trigger = build(every=0.1)
    fire = trigger.first_fire(NOW)
    for _ in range(9999):
        fire = trigger.next_fire(fire)
    assert fire == NOW + timedelta(seconds=1000)


def test_nothing_fires_after_end_but_a_fire_at_end_does():
    end = NOW + timedelta(seconds=60)
    trigger = build(every=30.0, end=end)
    first = trigger.first_fire(NOW)
    assert trigger.next_fire(first) == end
    assert trigger.next_fire(end) is None


def test_a_first_fire_after_end_means_the_trigger_never_fires():
    assert build(every=30.0, end=NOW + timedelta(seconds=10)).first_fire(NOW) is None


def test_a_naive_start_is_a_local_time_in_the_task_timezone():
    spec = {"kind": "interval", "every": 3600, "start": datetime(2026, 7, 1, 9, 0)}
    trigger = IntervalTrigger.from_spec(spec, BERLIN)
    assert trigger.first_fire(NOW) == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)


def test_every_accepts_duration_text_and_iso_text_start():
    trigger = build(every="1h30m", start="2026-05-04T12:00:00+02:00")
    assert trigger.every == timedelta(minutes=90)
    assert trigger.first_fire(NOW) == datetime(2026, 5, 4, 10, 0, tzinfo=UTC) + timedelta(minutes=90)


def test_elapsed_time_ignores_daylight_saving_changes():
    trigger = IntervalTrigger.from_spec({"kind": "interval", "every": 3600}, ZoneInfo("America/New_York"))
    before = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)  # 01:00 EST, an hour before the spring-forward
    assert trigger.next_fire(before) == before + timedelta(hours=1)


def test_describe_shows_the_interval_compactly():
    assert build(every=30.0).describe() == "every 30s"
    assert build(every=5400).describe() == "every 1h30m"
    assert build(every=1.5).describe() == "every 1.5s"
    assert build(every=0.25).describe() == "every 250ms"
    assert build(every=86400 * 2).describe() == "every 2d"


def test_triggers_of_the_same_interval_share_one_timedelta():
    first, second = build(every=3600), build(every="1h")
    assert first.every is second.every == timedelta(hours=1)
    assert build(every=30).every == timedelta(seconds=30)
