"""The ``python`` task type: call a function on the loop, in the thread pool, or in a child process."""

from __future__ import annotations

import contextvars
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from sts.plugin import ExecutionContext, Problem, Task, short_repr, short_text
from sts_tasks import capture
from sts_tasks.options import function_ref
from sts_tasks.settings import executor, kill_grace

Resolver = Callable[[Any], Callable[..., Any]]


@attrs.frozen(slots=True)
class PreparedCall:
    """A python task made ready to run: the resolved function and how to call it.

    Only what the call needs, nothing of the task itself (its name and import path are read from
    the run's task when needed), so tasks that call the same function the same way share one.
    """

    function: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    is_coroutine: bool
    #: The task's ``executor`` option (None: the config's ``executor.type``).
    executor: str | None = None


#: How many distinct argument-less calls ``PythonTaskType`` keeps shared (functions are few).
_SHARED_CALLS_KEPT = 1024


class PythonTaskType:
    """Calls ``task.function(*task.args, **task.kwargs)`` and returns what it returns.

    Coroutine functions are awaited on the event loop (a timeout cancels them). Other
    functions run in the engine's thread pool, their timeout counting from the function's
    start; a thread cannot be stopped, so at a timeout the run ends as timed out while the
    thread, abandoned (and replaced by the pool), finishes in the background and its result
    is discarded. With executor ``process`` the function runs in a new child process, found
    by import path; arguments and result travel as JSON. What the function prints is
    captured into the run's output and still written to the real stream.
    """

    def __init__(self) -> None:
        self._shared_calls: dict[tuple[Any, str | None], PreparedCall] = {}

    def validate(self, task: Task, resolve_function: Resolver) -> list[Problem]:
        """Problems with the function, its arguments and the executor (empty when the task can run)."""
        problems = []
        if task.command is not None:
            problems.append(Problem("command", "a python task runs 'function'; remove 'command' or use type: shell"))
        if task.params:
            problems.append(
                Problem("params", "a python task takes no params; pass arguments with 'args' and 'kwargs'")
            )
        if task.function is None:
            problems.append(
                Problem(
                    "function",
                    "required: a python task needs a function (a callable, an import path "
                    "'package.module:function' or a registered name)",
                )
            )
            return problems
        try:
            function = resolve_function(task.function)
        except LookupError as exc:
            problems.append(Problem("function", str(exc)))
            return problems
        problems.extend(_call_problems(function, task))
        if task.executor == "process":
            problems.extend(_process_problems(task, function, resolve_function))
        return problems

    def prepare(self, task: Task, resolve_function: Resolver) -> PreparedCall:
        """Resolve the function once per task version (``LookupError`` if it cannot be found)."""
        try:
            function = resolve_function(task.function)
        except LookupError as exc:
            raise LookupError(f"{exc}{_stale_module_hint(task.function)}") from exc
        args, kwargs, executor_name = tuple(task.args), task.kwargs, task.executor
        if args or kwargs:
            return PreparedCall(function, args, dict(kwargs), _is_coroutine_function(function), executor_name)
        # Without arguments the call depends only on the function and the executor: one object
        # shared by every task version that calls it so (96 bytes per task otherwise).
        try:
            key = (function, executor_name)
            call = self._shared_calls.get(key)
        except TypeError:  # an unhashable callable: not shared
            return PreparedCall(function, args, kwargs, _is_coroutine_function(function), executor_name)
        if call is None:
            if len(self._shared_calls) >= _SHARED_CALLS_KEPT:
                self._shared_calls.clear()
            call = self._shared_calls[key] = PreparedCall(
                function, args, kwargs, _is_coroutine_function(function), executor_name
            )
        return call

    async def execute(self, context: ExecutionContext) -> Any:
        """Call the function once and return its result; its exception fails the run."""
        call: PreparedCall = context.prepared
        if executor(context.settings, call.executor) == "process":
            import_path = _import_path(context.task)
            if import_path is None:
                raise ValueError(_no_import_path_message(context.task.name, context.task.function))
            from sts_tasks.child_runner import call_in_child  # asyncio subprocesses: loaded when first used

            return await call_in_child(
                import_path, call.args, call.kwargs, context.output, kill_grace(context.settings)
            )
        capture.install()
        if call.is_coroutine:  # _await_capturing, inline: one coroutine fewer per run
            token = capture.current_sink.set(context.output)
            try:
                return await call.function(*call.args, **call.kwargs)
            finally:
                capture.current_sink.reset(token)
        sink = capture.ClosableSink(context.output)
        # The thread-pool call runs in a copy of this context in which the run's sink is set.
        thread_context = contextvars.copy_context()
        thread_context.run(capture.current_sink.set, sink)
        try:
            result = await context.run_sync(thread_context.run, call.function, *call.args, **call.kwargs)
        finally:
            sink.close()
        if inspect.isawaitable(result):
            result = await _await_capturing(result, context.output)
        return result


async def _await_capturing(awaitable: Any, output: capture.Sink) -> Any:
    token = capture.current_sink.set(output)
    try:
        return await awaitable
    finally:
        capture.current_sink.reset(token)


def _stale_module_hint(function: Any) -> str:
    """A hint when the function's module was imported here before the function existed."""
    if not isinstance(function, str) or ":" not in function:
        return ""
    module = function.partition(":")[0]
    if module not in sys.modules:
        return ""
    return f" (module {module!r} was imported by this process earlier: restart it to load changed code)"


def _is_coroutine_function(function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


def _import_path(task: Task) -> str | None:
    ref = function_ref(task.function)
    return ref if ref is not None and ":" in ref else None


def _call_problems(function: Callable[..., Any], task: Task) -> list[Problem]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []  # some builtins have no signature: nothing to check before the call
    try:
        signature.bind(*task.args, **task.kwargs)
    except TypeError as exc:
        message = str(exc)
        key = "kwargs" if "keyword" in message or "multiple values" in message else "args"
        name = getattr(function, "__qualname__", repr(function))
        return [
            Problem(
                key,
                f"{short_text(str(name))}{short_text(str(signature))} cannot be called with "
                f"args={short_repr(list(task.args))} kwargs={short_repr(dict(task.kwargs))}: {short_text(message)}",
            )
        ]
    return []


def _process_problems(task: Task, function: Callable[..., Any], resolve_function: Resolver) -> list[Problem]:
    problems = []
    path = _import_path(task)
    if path is None:
        problems.append(Problem("function", _no_import_path_message(task.name, task.function)))
    elif not isinstance(task.function, str):
        try:
            same = resolve_function(path) == function
        except LookupError:
            same = False
        if not same:
            problems.append(
                Problem(
                    "function",
                    f"executor 'process' finds the function by import path, but {short_repr(path)} does not lead "
                    "back to this callable (a bound method or a wrapped function?); give an import path "
                    "'package.module:function'",
                )
            )
    for key, value in (("args", list(task.args)), ("kwargs", dict(task.kwargs))):
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            problems.append(
                Problem(key, f"executor 'process' passes arguments as JSON, and these are not plain data: "
                                 f"{short_text(str(exc), 200)}")
            )
    return problems


def _no_import_path_message(task_name: str, function: Any) -> str:
    what = f"the registered name {short_repr(function)}" if isinstance(function, str) else "an anonymous callable"
    return (
        f"task {task_name!r}: executor 'process' runs the function in a new process, which finds it only by "
        f"import path 'package.module:function'; {what} cannot be found there (use an import path, or "
        "executor 'thread')"
    )
