"""The retry policy: how long each attempt waits."""

from __future__ import annotations

import random

from sts_core.retry import RetryPolicy


def test_attempts_wait_the_delay_times_backoff_to_the_power_of_retries_so_far():
    policy = RetryPolicy(retries=5, delay=2.0, backoff=3.0, max_delay=1000.0)
    assert [policy.delay_after(n) for n in (1, 2, 3, 4)] == [2.0, 6.0, 18.0, 54.0]


def test_the_delay_is_capped():
    policy = RetryPolicy(retries=10, delay=10.0, backoff=2.0, max_delay=25.0)
    assert [policy.delay_after(n) for n in (1, 2, 3, 4)] == [10.0, 20.0, 25.0, 25.0]


def test_a_backoff_too_large_for_a_float_waits_the_cap_instead_of_failing():
    policy = RetryPolicy(retries=3, delay=1.0, backoff=1e308, max_delay=60.0)
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [1.0, 60.0, 60.0]


def test_no_delay_stays_no_delay_however_large_the_backoff():
    assert RetryPolicy(retries=3, delay=0.0, backoff=1e308, max_delay=60.0).delay_after(3) == 0.0


def test_jitter_adds_at_most_its_value():
    policy = RetryPolicy(retries=3, delay=5.0, jitter=2.0)
    rand = random.Random(7)
    waits = [policy.delay_after(1, rand) for _ in range(1000)]
    assert min(waits) >= 5.0 and max(waits) <= 7.0 and max(waits) - min(waits) > 1.5


def test_retries_counts_the_attempts_after_the_first():
    policy = RetryPolicy(retries=2)
    assert [policy.should_retry(n) for n in (1, 2, 3)] == [True, True, False]
