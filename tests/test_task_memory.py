"""What a task keeps per instance: empty mappings shared, read-only (W5 memory per task)."""

from __future__ import annotations

import copy
import pickle

import attrs
import pytest

from sts_core.task import Task


def test_tasks_without_params_alerts_or_options_share_one_read_only_empty_mapping() -> None:
    first, second = Task("a", type="shell", command="true"), Task("b", type="shell", command="true", params={})
    assert first.params is second.params
    assert first.alerts is second.alerts is first.params
    assert Task("c").options is first.params
    with pytest.raises(TypeError):
        first.params["cwd"] = "/tmp"  # type: ignore[index]


def test_shared_empty_mappings_change_no_equality_and_no_stored_form() -> None:
    task = Task("a", function="m:f", every=30, params={}, alerts={})
    assert task == Task("a", function="m:f", every=30)
    assert task.params == {} and task.alerts == {}
    assert task.to_dict() == {"name": "a", "function": "m:f", "every": 30.0}
    assert Task.from_dict(task.to_dict()) == task
    assert repr(task.params) == "{}" and "params={}" in repr(task)
    assert copy.deepcopy(task).params is pickle.loads(pickle.dumps(task)).params is task.params
    with_params = Task("a", function="m:f", every=30, params={"x": 1})
    assert with_params.params == {"x": 1} and with_params != task


def test_rarely_set_options_have_no_slot_of_their_own_and_read_as_before() -> None:
    plain = Task("a", function="m:f", every=30)
    assert plain.rare is plain.params  # the shared empty mapping: no per-task slot for each of them
    assert plain.retries is None and plain.timeout is None and plain.trigger is None
    task = Task("a", function="m:f", every=30, retries=2, timeout="1m", description="d", jitter=None)
    assert (task.retries, task.timeout, task.description, task.jitter) == (2, 60.0, "d", None)
    assert task.to_dict() == {"name": "a", "function": "m:f", "every": 30.0, "retries": 2, "timeout": 60.0,
                              "description": "d"}
    assert list(task.to_dict())[3:] == ["retries", "timeout", "description"]  # the documented order
    assert Task.from_dict(task.to_dict()) == task != plain
    assert pickle.loads(pickle.dumps(task)) == task == copy.copy(task)


def test_evolving_a_task_keeps_changes_and_clears_its_rarely_set_options() -> None:
    task = Task("a", function="m:f", every=30, retries=2, timezone="Europe/Berlin")
    assert attrs.evolve(task, enabled=False).retries == 2
    assert attrs.evolve(task, retries=3).retries == 3
    cleared = attrs.evolve(task, retries=None, timezone=None)
    assert cleared == Task("a", function="m:f", every=30) and cleared.rare == {}
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        task.retries = 4  # type: ignore[misc]


def test_repr_lists_every_option_in_the_documented_order() -> None:
    assert repr(Task("a", function="m:f", every=30, retries=2)) == (
        "Task(name='a', type='python', params={}, trigger=None, timezone=None, start=None, end=None, "
        "jitter=None, retries=2, retry_delay=None, backoff=None, max_retry_delay=None, retry_jitter=None, "
        "timeout=None, parent_tasks=(), max_instances=1, misfire=None, misfire_grace_time=None, enabled=True, "
        "tags=(), description=None, alerts={}, version=0, options={'function': 'm:f', 'every': 30.0})"
    )


def test_plugin_options_are_kept_compactly_and_read_as_a_mapping() -> None:
    task = Task("a", function="m:f", every=30, retries=2)
    other = Task("b", function="n:g", every=60)
    assert task.options == {"function": "m:f", "every": 30.0} == dict(task.options)
    assert {"function": "m:f", "every": 30.0} == task.options != other.options
    assert list(task.options.items()) == [("function", "m:f"), ("every", 30.0)]
    assert "every" in task.options and "cron" not in task.options and task.options.get("cron") is None
    with pytest.raises(KeyError):
        task.options["cron"]
    assert task.options._keys is other.options._keys  # type: ignore[attr-defined]  # one tuple of names
    assert repr(task.options) == "{'function': 'm:f', 'every': 30.0}" and task.rare == {"retries": 2}
    assert pickle.loads(pickle.dumps(task)) == copy.deepcopy(task) == task
    assert (task.every, task.function, task.retries) == (30.0, "m:f", 2)
