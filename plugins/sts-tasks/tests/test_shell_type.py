"""The shell task type: validation, exit status, output, cwd and env, and killing the process group."""

from __future__ import annotations

import asyncio
import time

import pytest
from sts_tasks_helpers import is_running, time_out_after_first_output

from sts.plugin import Task
from sts_tasks import CommandFailed
from sts_tasks.shell_type import ShellTaskType

TYPE = ShellTaskType()


def context_for(make_context, registry, task, **settings):
    return make_context(task, TYPE.prepare(task, registry.resolve), **settings)


def run_shell(make_context, registry, task, **settings):
    context = context_for(make_context, registry, task, **settings)
    return context, asyncio.run(TYPE.execute(context))


# --- validation --------------------------------------------------------------------------


def test_a_valid_shell_task_has_no_problems(registry):
    task = Task("t", type="shell", command="echo hi", params={"cwd": "/tmp", "env": {"A": "1"}})
    assert TYPE.validate(task, registry.resolve) == []


def test_a_shell_task_without_command_is_a_problem_on_command(registry):
    [problem] = TYPE.validate(Task("t", type="shell"), registry.resolve)
    assert problem.key_path == "command"


def test_function_args_and_kwargs_do_not_belong_to_a_shell_task(registry):
    task = Task("t", "mod:fn", type="shell", command="true", args=[1], kwargs={"a": 1})
    assert [p.key_path for p in TYPE.validate(task, registry.resolve)] == ["function", "args", "kwargs"]


def test_an_unknown_param_is_a_problem_with_a_suggestion(registry):
    [problem] = TYPE.validate(Task("t", type="shell", command="true", params={"cdw": "/"}), registry.resolve)
    assert problem.key_path == "params.cdw"
    assert "did you mean 'cwd'" in problem.message


def test_env_values_must_be_text(registry):
    task = Task("t", type="shell", command="true", params={"env": {"PORT": 80}, "cwd": 3})
    assert {p.key_path for p in TYPE.validate(task, registry.resolve)} == {"params.cwd", "params.env.PORT"}


# --- runs ----------------------------------------------------------------------------------


def test_exit_status_zero_succeeds_with_the_status_as_result(make_context, registry):
    assert run_shell(make_context, registry, Task("t", type="shell", command="true"))[1] == {"exit_status": 0}


def test_a_non_zero_exit_status_raises_command_failed(make_context, registry):
    with pytest.raises(CommandFailed) as caught:
        run_shell(make_context, registry, Task("t", type="shell", command="exit 3"))
    assert caught.value.exit_status == 3
    assert str(caught.value) == "exit status 3"


def test_stdout_and_stderr_are_merged_into_the_output_in_order(make_context, registry):
    task = Task("t", type="shell", command="echo one; echo two >&2; echo three")
    context, _ = run_shell(make_context, registry, task)
    assert context.output.text == "one\ntwo\nthree\n"


def test_a_list_command_is_executed_without_a_shell(make_context, registry):
    context, _ = run_shell(make_context, registry, Task("t", type="shell", command=["echo", "$HOME", "a b"]))
    assert context.output.text == "$HOME a b\n"


def test_cwd_sets_the_working_directory(make_context, registry, tmp_path):
    task = Task("t", type="shell", command="pwd", params={"cwd": str(tmp_path)})
    context, _ = run_shell(make_context, registry, task)
    assert context.output.text.strip() == str(tmp_path.resolve())


def test_env_is_merged_over_the_environment(make_context, registry, monkeypatch):
    monkeypatch.setenv("STS_TASKS_OUTER", "outer")
    task = Task("t", type="shell", command='echo "$STS_TASKS_OUTER $STS_TASKS_INNER"',
                params={"env": {"STS_TASKS_INNER": "inner"}})
    context, _ = run_shell(make_context, registry, task)
    assert context.output.text == "outer inner\n"


def test_a_missing_cwd_fails_naming_the_directory(make_context, registry, tmp_path):
    task = Task("t", type="shell", command="true", params={"cwd": str(tmp_path / "nope")})
    with pytest.raises(FileNotFoundError, match=r"params.cwd: directory .*nope.* does not exist"):
        run_shell(make_context, registry, task)


def test_a_missing_program_fails_naming_it(make_context, registry):
    with pytest.raises(FileNotFoundError, match="cannot run 'no-such-program-sts'"):
        run_shell(make_context, registry, Task("t", type="shell", command=["no-such-program-sts"]))


def test_a_timeout_kills_the_whole_process_group(make_context, registry):
    task = Task("t", type="shell", command="sleep 30 & echo $$ $!; sleep 30")
    context = context_for(make_context, registry, task, kill_grace=0.5)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        time_out_after_first_output(TYPE, context, 0.1)
    assert time.monotonic() - started < 2.0
    shell, background = (int(pid) for pid in context.output.text.split())
    time.sleep(0.05)  # the background sleep is re-parented and reaped by init
    assert not is_running(shell)
    assert not is_running(background)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(make_context, registry):
    task = Task("t", type="shell", command="trap '' TERM; echo $$; sleep 30 & wait")
    context = context_for(make_context, registry, task, kill_grace=0.3)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        time_out_after_first_output(TYPE, context, 0.05)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2.0
    assert not is_running(int(context.output.text.split()[0]))
