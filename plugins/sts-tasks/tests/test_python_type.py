"""The python task type in-process: validation, resolution, sync and async calls, timeouts, output capture."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest
import sts_tasks_samples as samples
from sts_tasks_helpers import ListOutput

from sts.plugin import Task
from sts_tasks import capture
from sts_tasks.python_type import PythonTaskType

TYPE = PythonTaskType()


def execute(make_context, task, registry, **settings):
    context = make_context(task, TYPE.prepare(task, registry.resolve), **settings)
    return context, asyncio.run(TYPE.execute(context))


def keys(problems):
    return [problem.key_path for problem in problems]


# --- validation --------------------------------------------------------------------------


def test_a_valid_task_has_no_problems(registry):
    task = Task("t", function="sts_tasks_samples:add", args=[1], kwargs={"b": 2})
    assert TYPE.validate(task, registry.resolve) == []


def test_a_task_without_function_is_a_problem_on_function(registry):
    [problem] = TYPE.validate(Task("t"), registry.resolve)
    assert problem.key_path == "function"
    assert "required" in problem.message


def test_an_unresolvable_function_reports_the_lookup_error(registry):
    [problem] = TYPE.validate(Task("t", function="sts_tasks_samples:ad"), registry.resolve)
    assert problem.key_path == "function"
    assert "has no attribute 'ad'" in problem.message
    assert "did you mean 'add'" in problem.message


def test_an_unknown_registered_name_reports_the_lookup_error(registry):
    [problem] = TYPE.validate(Task("t", function="nobody"), registry.resolve)
    assert "no function registered as 'nobody'" in problem.message


def test_too_many_positional_arguments_is_a_problem_on_args(registry):
    [problem] = TYPE.validate(Task("t", function=samples.add, args=[1, 2, 3]), registry.resolve)
    assert problem.key_path == "args"
    assert "too many positional arguments" in problem.message


def test_an_unexpected_keyword_is_a_problem_on_kwargs(registry):
    [problem] = TYPE.validate(Task("t", function=samples.add, args=[1], kwargs={"c": 1}), registry.resolve)
    assert problem.key_path == "kwargs"
    assert "'c'" in problem.message


def test_a_missing_argument_is_a_problem_naming_the_signature(registry):
    [problem] = TYPE.validate(Task("t", function=samples.add), registry.resolve)
    assert problem.key_path == "args"
    assert "add(a: 'int', b: 'int' = 0)" in problem.message or "add(a: int, b: int = 0)" in problem.message


def test_the_arguments_shown_in_a_problem_are_bounded_however_large_they_are(registry):
    laughs: list = ["lol"] * 9
    for _ in range(8):  # 9**9 strings once expanded: a 430-byte YAML file with aliases builds this
        laughs = [laughs] * 9
    task = Task("t", function=samples.add, args=[laughs, laughs, laughs], kwargs={"x" * 1000: laughs})
    started = time.perf_counter()
    [problem] = TYPE.validate(task, registry.resolve)
    assert time.perf_counter() - started < 0.5
    assert "cannot be called with args=[[[[" in problem.message
    assert len(problem.message) < 500


def test_command_and_params_do_not_belong_to_a_python_task(registry):
    task = Task("t", function=samples.add, args=[1], command="ls", params={"cwd": "/"})
    assert keys(TYPE.validate(task, registry.resolve)) == ["command", "params"]


def test_builtins_without_a_signature_are_not_rejected(registry):
    assert TYPE.validate(Task("t", function=dict, kwargs={"a": 1}), registry.resolve) == []


# --- calls ---------------------------------------------------------------------------------


def test_a_sync_function_returns_its_result(make_context, registry):
    task = Task("t", function=samples.add, args=[2], kwargs={"b": 3})
    assert execute(make_context, task, registry)[1] == 5


def test_a_sync_function_runs_in_the_thread_pool(make_context, registry):
    task = Task("t", function=threading.current_thread)
    thread = execute(make_context, task, registry)[1]
    assert thread.name.startswith("test-pool")


def test_a_coroutine_function_is_awaited_on_the_loop(make_context, registry):
    async def where() -> str:
        return threading.current_thread().name

    assert execute(make_context, Task("t", function=samples.async_add, args=[2, 3]), registry)[1] == 5
    assert execute(make_context, Task("t", function=where), registry)[1] == threading.current_thread().name


def test_an_import_path_is_resolved_once_in_prepare(make_context, registry):
    task = Task("t", function="sts_tasks_samples:add", args=[1, 1])
    prepared = TYPE.prepare(task, registry.resolve)
    assert prepared.function is samples.add
    assert prepared.args == (1, 1)


def test_prepare_keeps_no_copy_of_empty_kwargs_per_task(registry):
    first = TYPE.prepare(Task("a", function="sts_tasks_samples:add"), registry.resolve)
    second = TYPE.prepare(Task("b", function="sts_tasks_samples:add", kwargs={}), registry.resolve)
    assert first.kwargs is second.kwargs and first.kwargs == {}
    given = Task("c", function="sts_tasks_samples:add", kwargs={"a": 1, "b": 2})
    assert TYPE.prepare(given, registry.resolve).kwargs == {"a": 1, "b": 2}


def test_tasks_calling_a_function_the_same_way_without_arguments_share_one_prepared_call(registry):
    def prepare(name, **options):
        return TYPE.prepare(Task(name, function="sts_tasks_samples:add", **options), registry.resolve)

    assert prepare("a") is prepare("b", kwargs={}, args=[])
    assert prepare("a") is not prepare("a", executor="process")
    assert prepare("a", args=[1, 2]) is not prepare("b", args=[1, 2])  # arguments: each task its own
    assert prepare("c", executor="process").executor == "process"


def test_a_registered_name_is_resolved_through_the_function_registry(make_context, registry):
    registry.register("adder", samples.add)
    assert execute(make_context, Task("t", function="adder", args=[4, 5]), registry)[1] == 9


def test_an_exception_of_the_function_fails_the_run(make_context, registry):
    task = Task("t", function=samples.fail, args=["broken"])
    with pytest.raises(ValueError, match="broken"):
        execute(make_context, task, registry)


def test_an_object_with_an_async_call_is_awaited(make_context, registry):
    class Job:
        async def __call__(self, x: int) -> int:
            return x * 2

    assert execute(make_context, Task("t", function=Job(), args=[21]), registry)[1] == 42


# --- timeouts ------------------------------------------------------------------------------


def test_a_timeout_cancels_the_coroutine(make_context, registry):
    state = {"cancelled": False}

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    context = make_context(Task("t", function=slow), TYPE.prepare(Task("t", function=slow), registry.resolve))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(TYPE.execute(context), 0.2))
    assert time.monotonic() - started < 1.0
    assert state["cancelled"]


def test_a_timeout_of_a_thread_returns_promptly_and_discards_the_late_result(make_context, registry):
    name = "thread-timeout"
    samples.events[name] = threading.Event()
    samples.events[name + ":done"] = done = threading.Event()
    task = Task("t", function=samples.wait_for_event, args=[name])
    context = make_context(task, TYPE.prepare(task, registry.resolve))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(TYPE.execute(context), 0.2))
    assert time.monotonic() - started < 1.0
    assert not done.is_set(), "the thread cannot be stopped: it is still running"
    samples.events[name].set()
    assert done.wait(2)
    assert "late output" not in context.output.text


# --- output capture ------------------------------------------------------------------------


def test_printed_output_is_captured_and_still_written_to_the_real_streams(make_context, registry, capsys):
    context, result = execute(make_context, Task("t", function=samples.shout, args=["hi"]), registry)
    assert result == "HI"
    assert context.output.text == "out: hi\nerr: hi\n"
    real = capsys.readouterr()
    assert real.out == "out: hi\n"
    assert real.err == "err: hi\n"


def test_output_outside_a_run_is_not_captured(make_context, registry, capsys):
    context, _ = execute(make_context, Task("t", function=samples.add, args=[1]), registry)
    print("after the run")
    assert context.output.parts == []
    assert capsys.readouterr().out == "after the run\n"


def test_concurrent_coroutine_runs_do_not_mix_their_output(make_context, registry):
    contexts = [
        make_context(task, TYPE.prepare(task, registry.resolve))
        for task in (Task(n, function=samples.async_shout, args=[n, 0.02]) for n in ("a", "b"))
    ]

    async def both() -> list[str]:
        return await asyncio.gather(*(TYPE.execute(context) for context in contexts))

    assert asyncio.run(both()) == ["a", "b"]
    assert contexts[0].output.text == "first a\nsecond a\n"
    assert contexts[1].output.text == "first b\nsecond b\n"


def test_concurrent_thread_runs_do_not_mix_their_output(make_context, registry):
    contexts = [
        make_context(task, TYPE.prepare(task, registry.resolve))
        for task in (Task(n, function=samples.thread_shout, args=[n, 0.05]) for n in ("a", "b"))
    ]

    async def both() -> list[str]:
        return await asyncio.gather(*(TYPE.execute(context) for context in contexts))

    assert asyncio.run(both()) == ["a", "b"]
    assert contexts[0].output.text == "first a\nsecond a\n"
    assert contexts[1].output.text == "first b\nsecond b\n"


def test_the_routing_stream_is_installed_once(make_context, registry):
    execute(make_context, Task("t", function=samples.add, args=[1]), registry)
    stream = sys.stdout
    execute(make_context, Task("t", function=samples.add, args=[1]), registry)
    assert sys.stdout is stream
    assert type(stream) is capture.RoutingStream
    assert type(stream.wrapped) is not capture.RoutingStream


def test_the_routing_stream_behaves_like_the_stream_it_wraps():
    inner = ListOutput()
    inner.encoding = "utf-8"
    stream = capture.RoutingStream(inner)
    stream.writelines(["a", "b"])
    assert inner.text == "ab"
    assert stream.encoding == "utf-8"


def test_a_function_missing_from_a_module_imported_earlier_suggests_a_restart(registry):
    # moved here from the kernel's plans with the function option (issue 15)
    with pytest.raises(LookupError, match="module 'sts_tasks_samples' was imported by this process earlier"):
        TYPE.prepare(Task("t", function="sts_tasks_samples:not_yet_written"), registry.resolve)
