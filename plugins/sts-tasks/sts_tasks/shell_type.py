"""The ``shell`` task type: run a command line, stream its output, fail on a non-zero exit status."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from sts.plugin import ExecutionContext, Problem, Task, did_you_mean, short_repr, short_text
from sts_tasks.errors import CommandFailed
from sts_tasks.settings import kill_grace

SHELL = "/bin/sh"
PARAMS: tuple[str, ...] = ("cwd", "env")


@attrs.frozen(slots=True)
class PreparedCommand:
    """A shell task made ready to run: the argument vector, working directory and environment overlay."""

    argv: tuple[str, ...]
    cwd: str | None
    env: Mapping[str, str] | None


class ShellTaskType:
    """Runs ``task.command``: text goes through ``/bin/sh -c``, a list is executed directly.

    ``task.params`` may hold ``cwd`` (working directory) and ``env`` (variables merged over the
    worker's environment). Output (stdout and stderr merged) is streamed into the run's
    output. Exit status 0 gives ``{"exit_status": 0}``; any other status raises
    ``CommandFailed``. At a timeout the command's whole process group is stopped.
    """

    def validate(self, task: Task, resolve_function: Callable[[Any], Callable[..., Any]]) -> list[Problem]:
        """Problems with the command and its params (empty when the task can run)."""
        problems = []
        if task.command is None:
            problems.append(Problem("command", "required: a shell task needs a command line or a list of arguments"))
        if task.function is not None:
            problems.append(Problem("function", "a shell task runs 'command'; remove 'function' or use type: python"))
        for key in ("args", "kwargs"):
            if getattr(task, key):
                problems.append(Problem(key, f"'{key}' applies to python tasks; put arguments in 'command'"))
        problems.extend(_param_problems(task.params))
        return problems

    def prepare(self, task: Task, resolve_function: Callable[[Any], Callable[..., Any]]) -> PreparedCommand:
        """Build the argument vector once per task version."""
        command = task.command
        if command is None:
            raise ValueError(f"task {task.name!r}: a shell task needs a command")
        argv = (SHELL, "-c", command) if isinstance(command, str) else tuple(command)
        env = task.params.get("env")
        return PreparedCommand(argv=argv, cwd=task.params.get("cwd"), env=dict(env) if env else None)

    async def execute(self, context: ExecutionContext) -> dict[str, int]:
        """Run the command to completion; on cancellation stop its process group and re-raise."""
        import asyncio  # with the process helpers, here: the CLI loads this module for `sts --help` too

        from sts_tasks.processes import pump, spawn, supervise

        prepared: PreparedCommand = context.prepared
        env = {**os.environ, **prepared.env} if prepared.env else None
        try:
            process = await spawn(
                prepared.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=prepared.cwd,
                env=env,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise _start_error(prepared, exc) from None
        assert process.stdout is not None
        await supervise(process, [pump(process.stdout, context.output)], kill_grace(context.settings))
        status = process.returncode
        assert status is not None
        if status != 0:
            raise CommandFailed(status)
        return {"exit_status": 0}


def _param_problems(params: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for key in params:
        if key not in PARAMS:
            hint = did_you_mean(str(key), PARAMS)
            problems.append(
                Problem(f"params.{short_text(str(key))}", f"unknown shell option{hint}; expected cwd or env")
            )
    cwd = params.get("cwd")
    if cwd is not None and not (isinstance(cwd, str) and cwd):
        problems.append(Problem("params.cwd", f"expected the path of a directory, got {short_repr(cwd)}"))
    env = params.get("env")
    if env is not None:
        if not isinstance(env, Mapping):
            problems.append(
                Problem("params.env", f"expected a mapping of variable names to text, got {short_repr(env)}")
            )
        else:
            for name, value in env.items():
                if not isinstance(name, str) or not name or "=" in name:
                    problems.append(Problem("params.env", f"expected a variable name, got {short_repr(name)}"))
                elif not isinstance(value, str):
                    problems.append(
                        Problem(f"params.env.{short_text(name)}", f"expected text (quote numbers in YAML), "
                                                            f"got {short_repr(value)}")
                    )
    return problems


def _start_error(prepared: PreparedCommand, exc: OSError) -> OSError:
    """A message that says whether the directory or the program is what could not be used."""
    if prepared.cwd is not None and not os.path.isdir(prepared.cwd):
        return type(exc)(exc.errno, f"params.cwd: directory {prepared.cwd!r} does not exist")
    return type(exc)(exc.errno, f"cannot run {prepared.argv[0]!r}: {exc.strerror}")
