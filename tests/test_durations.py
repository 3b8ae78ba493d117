"""duration_seconds: what a duration value says, without parse_duration's limits."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from sts_core.durations import duration_seconds, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1h30m", 5400.0), (" 250ms ", 0.25), ("6000w", 6000 * 604800.0), (2.5, 2.5), (timedelta(minutes=2), 120.0),
     (10**400, math.inf), (-(10**400), -math.inf), ("-5", -5.0), ("inf", math.inf)],
)
def test_duration_seconds_reads_any_duration_however_long_or_negative(value, seconds):
    assert duration_seconds(value) == seconds


@pytest.mark.parametrize("value", [None, True, "soon", "5 parsecs", [5], {"s": 5}])
def test_duration_seconds_is_none_for_what_is_no_duration_and_parse_duration_says_what_is_expected(value):
    assert duration_seconds(value) is None
    with pytest.raises(ValueError, match="expected a duration such as 30s, 5m"):
        parse_duration(value)
