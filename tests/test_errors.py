"""The helpers every error message uses: "did you mean" only for close names, and bounded reprs."""

from __future__ import annotations

import time
from zoneinfo import available_timezones

import pytest

from sts_core.errors import MAX_KEY_PATH_LENGTH, MAX_MESSAGE_LENGTH, Problem
from sts_core.task import task_keys
from sts_core.wording import SHORT_REPR_LIMIT, did_you_mean, short_repr, short_text


@pytest.mark.parametrize(
    ("word", "meant"),
    [
        ("evry", "every"), ("timout", "timeout"), ("crn", "cron"), ("retires", "retries"),  # typos
        ("cdw", "cwd"),  # two letters swapped
        ("func", "function"), ("retry", "retries"), ("param", "params"),  # prefixes
        ("cmd", "command"),  # an abbreviation
        ("Timeout", "timeout"), ("EVERY", "every"),  # case
        ("max_retries", "retries"),
    ],
)
def test_a_close_name_is_suggested(word, meant):
    assert did_you_mean(word, [*task_keys(), "cwd", "env"]) == f" (did you mean {meant!r}?)"


@pytest.mark.parametrize("word", ["env", "x", "id", "fn", "foo", "queue", "priority", "labels", "a" * 5000])
def test_an_unrelated_name_gets_no_suggestion(word):
    assert did_you_mean(word, task_keys()) == ""


@pytest.mark.parametrize(("word", "meant"), [("Europe/Berln", "Europe/Berlin"), ("Berlin", "Europe/Berlin"),
                                             ("europe/paris", "Europe/Paris")])
def test_time_zones_are_suggested_by_their_full_name(word, meant):
    assert did_you_mean(word, available_timezones()) == f" (did you mean {meant!r}?)"


def test_no_suggestion_among_no_candidates_or_for_non_text():
    assert did_you_mean("every", []) == ""
    assert did_you_mean(3, task_keys()) == ""  # type: ignore[arg-type]


def test_short_repr_is_repr_for_small_values():
    assert [short_repr(v) for v in ("a", 1, 1.5, None, [1, 2], {"k": True})] == [
        "'a'", "1", "1.5", "None", "[1, 2]", "{'k': True}"]


def test_short_repr_bounds_text_and_integers():
    assert len(short_repr("x" * 10_000)) <= SHORT_REPR_LIMIT
    assert short_repr(10**5000) == "a number of about 5001 digits"  # repr() itself would raise here
    assert short_text("y" * 500).endswith("...") and len(short_text("y" * 500)) == SHORT_REPR_LIMIT


def test_short_repr_of_a_billion_laughs_structure_is_fast_and_short():
    laughs: list = ["lol"] * 9
    for _ in range(9):  # 9**10 strings once expanded
        laughs = [laughs] * 9
    started = time.perf_counter()
    text = short_repr(laughs)
    assert time.perf_counter() - started < 0.1
    assert len(text) <= SHORT_REPR_LIMIT and text.startswith("[[[")


def test_short_repr_survives_a_failing_repr():
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert short_repr(Broken()).startswith("<Broken ")


def test_a_problem_bounds_its_message_and_key_path_whoever_wrote_them():
    problem = Problem("k" * 10_000, "a plugin's message embedding a value: " + "v" * 1_000_000)
    assert len(problem.key_path) == MAX_KEY_PATH_LENGTH and len(problem.message) == MAX_MESSAGE_LENGTH
    assert problem.message.endswith("...")
