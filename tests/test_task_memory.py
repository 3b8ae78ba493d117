"""What a task keeps per instance: empty mappings shared, read-only (W5 memory per task)."""

from __future__ import annotations

import copy
import pickle

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
