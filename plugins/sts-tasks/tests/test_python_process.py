"""The python task type with executor "process": a fresh child per run, JSON in and out, killed at timeout."""

from __future__ import annotations

import asyncio
import time

import pytest
import sts_tasks_samples as samples
from sts_tasks_helpers import is_running, time_out_after_first_output

from sts.plugin import Task
from sts_tasks import RemoteError
from sts_tasks.child_runner import decode_reply
from sts_tasks.python_type import PythonTaskType

TYPE = PythonTaskType()


def context_for(make_context, registry, task, **settings):
    return make_context(task, TYPE.prepare(task, registry.resolve), executor="process", **settings)


def run_in_child(make_context, registry, task, **settings):
    context = context_for(make_context, registry, task, **settings)
    return context, asyncio.run(TYPE.execute(context))


def test_a_function_runs_in_a_child_process_and_returns_its_json_result(make_context, registry):
    task = Task("t", function="sts_tasks_samples:add", args=[2], kwargs={"b": 40}, executor="process")
    assert run_in_child(make_context, registry, task)[1] == 42


def test_a_coroutine_function_runs_in_the_child_too(make_context, registry):
    task = Task("t", function="sts_tasks_samples:async_add", args=[1, 2])
    assert run_in_child(make_context, registry, task)[1] == 3


def test_the_childs_stdout_and_stderr_go_to_the_runs_output(make_context, registry):
    context, result = run_in_child(make_context, registry, Task("t", function=samples.shout, args=["hey"]))
    assert result == "HEY"
    assert context.output.text == "out: hey\nerr: hey\n"


def test_an_exception_in_the_child_comes_back_as_a_remote_error(make_context, registry):
    task = Task("t", function="sts_tasks_samples:fail", args=["it broke"])
    with pytest.raises(RemoteError) as caught:
        run_in_child(make_context, registry, task)
    assert str(caught.value) == "ValueError: it broke"
    assert caught.value.remote_type == "ValueError"
    assert "in fail" in caught.value.remote_traceback
    assert "child.py" not in caught.value.remote_traceback  # it starts at the task's own code
    assert "it broke" in str(caught.value.__cause__)


def test_a_result_that_is_not_json_fails_saying_so(make_context, registry):
    with pytest.raises(RemoteError, match="not JSON-serialisable"):
        run_in_child(make_context, registry, Task("t", function="sts_tasks_samples:returns_set"))


def test_a_child_that_dies_without_a_reply_fails_with_its_exit_status(make_context, registry):
    with pytest.raises(RemoteError, match="exited with status 3 without sending a result"):
        run_in_child(make_context, registry, Task("t", function="sts_tasks_samples:exit_hard", args=[3]))


def test_a_timeout_kills_the_child_and_its_children(make_context, registry):
    task = Task("t", function="sts_tasks_samples:start_grandchild_and_sleep", args=[30])
    context = context_for(make_context, registry, task, kill_grace=0.5)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        time_out_after_first_output(TYPE, context, 0.1)
    assert time.monotonic() - started < 3.0
    child, grandchild = (int(pid) for pid in context.output.text.split())
    time.sleep(0.05)  # the grandchild is re-parented and reaped by init
    assert not is_running(child)
    assert not is_running(grandchild)


def test_without_an_import_path_the_process_executor_fails_at_execute(make_context, registry):
    registry.register("adder", samples.add)
    with pytest.raises(ValueError, match="registered name 'adder' cannot be found there"):
        run_in_child(make_context, registry, Task("t", function="adder", args=[1]))


def test_a_registered_name_with_executor_process_is_a_validation_problem(registry):
    registry.register("adder", samples.add)
    [problem] = TYPE.validate(Task("t", function="adder", args=[1], executor="process"), registry.resolve)
    assert problem.key_path == "function"
    assert "import path" in problem.message


def test_an_anonymous_callable_with_executor_process_is_a_validation_problem(registry):
    [problem] = TYPE.validate(Task("t", function=lambda: 1, executor="process"), registry.resolve)
    assert "an anonymous callable cannot be found there" in problem.message


def test_a_module_level_callable_with_executor_process_is_valid(registry):
    assert TYPE.validate(Task("t", function=samples.add, args=[1], executor="process"), registry.resolve) == []


def test_arguments_that_are_not_json_are_a_validation_problem(registry):
    task = Task("t", function=samples.add, args=[{1, 2}], executor="process")
    [problem] = TYPE.validate(task, registry.resolve)
    assert problem.key_path == "args"
    assert "JSON" in problem.message


def test_an_empty_reply_is_reported_as_a_dead_child():
    with pytest.raises(RemoteError) as caught:
        decode_reply(b"", -9)
    assert caught.value.remote_type == "ChildProcessError"
    assert "status -9" in str(caught.value)
