"""Tasks and runs as data: validation on creation, plain-data round trips, durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from sts_core.durations import format_duration, parse_duration
from sts_core.errors import Problem, TaskValidationError
from sts_core.run import Run, RunState
from sts_core.task import Task, create_task


def job() -> None:
    """An importable function for function_ref tests."""


@pytest.mark.parametrize(
    ("options", "key", "expected"),
    [
        ({"every": "3x"}, "every", "expected a duration"),
        ({"every": 0}, "every", "greater than zero"),
        ({"retries": -1}, "retries", "whole number >= 0"),
        ({"retries": 1.5}, "retries", "whole number >= 0"),
        ({"backoff": 0.5}, "backoff", "number >= 1.0"),
        ({"timezone": "Europe/Berln"}, "timezone", "did you mean 'Europe/Berlin'"),
        ({"at": "tomorrow"}, "at", "ISO 8601"),
        ({"misfire": "coalese"}, "misfire", "did you mean 'coalesce'"),
        ({"executor": "fork"}, "executor", "thread, process"),
        ({"max_instances": 0}, "max_instances", "whole number >= 1"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"parent_tasks": [1]}, "parent_tasks", "list of names"),
        ({"every": "1s", "cron": "* * * * *"}, "cron", "at most one trigger"),
        ({"every": "1s", "parent_tasks": ["a"]}, "parent_tasks", "cannot have both a trigger and parents"),
        ({"parent_tasks": ["t"]}, "parent_tasks", "its own parent"),
        ({"function": "not a path:"}, "function", "import path"),
        ({"command": ""}, "command", "command line"),
        ({"kwargs": {1: 2}}, "kwargs", "mapping of names"),
    ],
)
def test_a_task_with_a_bad_option_names_the_option_and_what_was_expected(options, key, expected):
    options = {"function": job, **options}
    with pytest.raises(TaskValidationError) as caught:
        Task("t", **options)
    problem = next(p for p in caught.value.problems if p.key_path == key)
    assert expected in problem.message
    assert str(caught.value).startswith("task 't': ")


def test_every_bad_option_is_reported_at_once():
    with pytest.raises(TaskValidationError) as caught:
        Task("t", job, every="3x", retries=-1, timeout="soon")
    assert {p.key_path for p in caught.value.problems} == {"every", "retries", "timeout"}


def test_a_task_name_must_be_a_plain_identifier():
    with pytest.raises(TaskValidationError, match="task name"):
        Task("no spaces please", job)


@pytest.mark.parametrize(("option", "value"), [("name", "report\n"), ("function", "reports:build\n")])
def test_a_trailing_newline_is_not_part_of_a_valid_name(option, value):
    with pytest.raises(TaskValidationError, match=option):
        Task(**{"name": "report", "function": "reports:build", option: value})


def test_durations_and_dates_are_normalised():
    task = Task("t", job, every="1h30m", at=None, timeout="250ms", start="2026-01-01T00:00:00+01:00")
    assert (task.every, task.timeout) == (5400.0, 0.25)
    assert task.start == datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=-1)


def test_create_task_is_task_with_positional_function():
    assert create_task("t", "pkg.mod:fn", every="10s") == Task("t", "pkg.mod:fn", every="10s")


def test_trigger_spec_names_the_trigger_kind_and_carries_start_and_end():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert Task("t", job, every="30s", start=start).trigger_spec() == {"kind": "interval", "every": 30.0,
                                                                       "start": start}
    assert Task("t", job, cron="0 * * * *").trigger_spec() == {"kind": "cron", "cron": "0 * * * *"}
    assert Task("t", job, trigger={"kind": "solar", "event": "dawn"}).trigger_kind == "solar"
    assert Task("t", job).trigger_spec() is None


def test_a_task_round_trips_through_plain_data():
    task = Task("report", "reports:build", every="1h", retries=2, tags=["a"], kwargs={"x": 1},
                at=None, start=datetime(2026, 1, 1, tzinfo=UTC))
    data = task.to_dict()
    assert data == {"name": "report", "function": "reports:build", "every": 3600.0, "retries": 2, "tags": ["a"],
                    "kwargs": {"x": 1}, "start": "2026-01-01T00:00:00+00:00"}
    assert Task.from_dict(data) == task


def test_an_importable_function_is_stored_by_its_import_path_and_a_lambda_is_refused():
    assert Task("t", job).to_dict()["function"].endswith("test_model:job")
    with pytest.raises(TaskValidationError, match="anonymous callable"):
        Task("t", lambda: None).to_dict()


def test_from_dict_reports_unknown_keys_with_a_suggestion_and_bad_values_together():
    with pytest.raises(TaskValidationError) as caught:
        Task.from_dict({"name": "t", "retires": 1, "every": "3x"})
    rendered = str(caught.value)
    assert "retires: unknown task option (did you mean 'retries'?)" in rendered
    assert "every: expected a duration" in rendered


def test_a_run_round_trips_through_plain_data():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    run = Run(id="r1", task_name="t", task_version=2, scheduled_for=now, attempt=3, state=RunState.RETRYING,
              started_at=now, retry_at=now + timedelta(seconds=5), error_type="ValueError")
    again = Run.from_dict(run.to_dict())
    assert again.to_dict() == run.to_dict()
    assert again.state is RunState.RETRYING


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("2d", 172800), ("1w", 604800), (12, 12),
     ("1.5", 1.5), (timedelta(minutes=1), 60)],
)
def test_durations_accept_units_numbers_and_timedeltas(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5 parsecs", "-1s", True, None, [1]])
def test_bad_durations_say_what_is_expected(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize("huge", [1e300, "inf", float("inf"), "5300w", 100 * 366 * 86400])
def test_durations_longer_than_a_century_are_refused(huge):
    """Longer ones would overflow date-time arithmetic at the first fire or retry."""
    with pytest.raises(ValueError, match="at most 100 years"):
        parse_duration(huge)


@pytest.mark.parametrize("backoff", [float("nan"), float("inf")])
def test_a_backoff_must_be_a_finite_number(backoff):
    with pytest.raises(TaskValidationError, match=r"backoff: expected a finite number >= 1\.0"):
        Task("t", job, backoff=backoff)


def test_durations_are_formatted_compactly():
    assert [format_duration(s) for s in (0.0123, 4.25, 42, 245, 7300)] == ["12ms", "4.2s", "42s", "4m05s", "2h01m"]


def test_with_version_stores_the_same_definition_under_a_new_version():
    task = Task("t", job, every="1m", retries=2)
    stored = task.with_version(7)
    assert stored.version == 7 and task.version == 0
    assert attrs.evolve(stored, version=0) == task


def test_an_error_with_many_problems_lists_fifty_and_counts_the_rest():
    problems = [Problem(f"t{i}.every", "bad") for i in range(120)]
    lines = TaskValidationError(problems, source="f.yaml").lines()
    assert len(lines) == 51
    assert lines[-1] == "... and 70 more problem(s)"


# --- numbers out of range, zero timeouts, unknown keywords, all problems at once (issue 14) -------

DURATION_OPTIONS = ("every", "delay", "jitter", "retry_delay", "max_retry_delay", "retry_jitter", "timeout",
                    "misfire_grace_time")


@pytest.mark.parametrize("option", [*DURATION_OPTIONS, "backoff", "retries", "max_instances"])
@pytest.mark.parametrize("value", [10**309, -(10**309), 10**5000], ids=["1e309", "-1e309", "1e5000"])
def test_an_integer_too_large_for_a_float_is_a_problem_with_the_option_not_an_overflow(option, value):
    with pytest.raises(TaskValidationError) as caught:
        Task("t", job, **{option: value})
    [problem] = caught.value.problems
    assert problem.key_path == option
    assert "expected" in problem.message and "digits" in problem.message
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(("option", "value"), [("retries", 10**9 + 1), ("max_instances", 2**63)], ids=str)
def test_counts_have_a_sane_upper_bound(option, value):
    with pytest.raises(TaskValidationError, match=rf"{option}: expected a whole number from [01] to 1000000000"):
        Task("t", job, **{option: value})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True])
@pytest.mark.parametrize("option", ["every", "timeout", "backoff", "retries", "max_instances"])
def test_nan_infinity_and_booleans_are_not_numbers(option, value):
    with pytest.raises(TaskValidationError) as caught:
        Task("t", job, **{option: value})
    assert [p.key_path for p in caught.value.problems] == [option]


@pytest.mark.parametrize("timeout", [0, 0.0, "0s", "0ms"])
def test_a_timeout_of_zero_is_refused_as_in_the_config(timeout):
    with pytest.raises(TaskValidationError) as caught:
        Task("t", job, timeout=timeout)
    assert str(caught.value) == (
        f"task 't': timeout: expected a duration greater than zero such as 30s, 5m or 1h30m, got {timeout!r}"
    )


def test_a_negative_timeout_is_refused():
    with pytest.raises(TaskValidationError, match="timeout: expected a duration of zero or more, got -1"):
        Task("t", job, timeout=-1)


def test_an_unknown_keyword_says_which_option_was_meant():
    with pytest.raises(TaskValidationError) as caught:
        Task("x", evry=3)
    assert str(caught.value) == "task 'x': evry: unknown task option (did you mean 'every'?)"


def test_an_unknown_keyword_is_reported_with_every_other_problem():
    with pytest.raises(TaskValidationError) as caught:
        Task("x", job, evry=3, timout="1s", retries=-1, zzz=1)
    assert [(p.key_path, p.message) for p in caught.value.problems] == [
        ("evry", "unknown task option (did you mean 'every'?)"),
        ("timout", "unknown task option (did you mean 'timeout'?)"),
        ("zzz", "unknown task option"),
        ("retries", "expected a whole number >= 0, got -1"),
    ]


def test_an_unknown_keyword_without_a_name_is_still_a_validation_error():
    with pytest.raises(TaskValidationError, match="evry: unknown task option"):
        Task(evry=3)


def test_copies_and_evolved_tasks_still_work_with_the_keyword_check():
    import copy
    import pickle

    task = Task("t", "pkg.mod:fn", every=3)
    assert copy.copy(task) == task == pickle.loads(pickle.dumps(task))
    assert attrs.evolve(task, every=5).every == 5.0


def test_cross_field_problems_are_reported_together_with_bad_values():
    with pytest.raises(TaskValidationError) as caught:
        Task("t", job, every="1s", cron="* * * * *", retries=-1, start="2026-02-01T00:00", end="2026-01-01T00:00")
    assert {p.key_path: p.message for p in caught.value.problems} == {
        "retries": "expected a whole number >= 0, got -1",
        "cron": "a task has at most one trigger; got every and cron",
        "end": "expected end after start",
    }


def test_task_from_valid_options_leaves_out_what_is_invalid():
    from sts_core.task import task_from_valid_options

    task, left_out = task_from_valid_options(
        {"name": "t", "function": "pkg:fn", "cron": "99 * * * *", "retries": -1, "evry": 3, "every": "1s"}
    )
    assert left_out == {"retries", "evry", "cron"}  # cron: the second trigger
    assert task == Task("t", "pkg:fn", every="1s")
    assert task_from_valid_options({"name": "bad name", "every": 1}) == (None, frozenset())


def test_run_records_stay_readable_across_versions() -> None:
    from datetime import UTC, datetime

    from sts_core.run import Run

    run = Run(id="r1", task_name="t", task_version=1, scheduled_for=datetime(2026, 1, 1, tzinfo=UTC))
    data = run.to_dict()
    assert "waits_for_instance" not in data and "isolated" not in data  # an earlier version cannot read them
    assert Run.from_dict({**data, "added_by_a_later_version": 1}).to_dict() == data
    waiting = Run.from_dict({**data, "waits_for_instance": True})
    assert waiting.waits_for_instance and waiting.to_dict()["waits_for_instance"] is True
    alone = Run.from_dict({**data, "isolated": True})
    assert alone.isolated and alone.to_dict()["isolated"] is True
