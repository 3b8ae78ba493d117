"""The ``sts`` commands that act on stored tasks: ``pause``, ``resume``, ``trigger``, ``remove``,
and ``next`` (a task's coming fire times).

``pause``, ``resume``, ``trigger`` and ``remove`` change the backend's store, so they need one
that processes share (``scheduler_backend: redis``): a running scheduler picks the change up.
The memory backend lives inside the process that runs it, so there they are refused with a
message saying so. ``next`` reads a stored task, or with a task file that file's task (nothing
is stored then), so it works on every backend.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from sts_cli.cli import EXIT_FAILED, EXIT_OK
from sts_cli.inspect_commands import add_json_option, display_zone, memory_hint, open_scheduler, print_json
from sts_cli.tables import format_time
from sts_core.errors import SchedulerStateError, STSError, TaskNotFoundError
from sts_core.run import RunState
from sts_core.task import Task


def add_commands(sub: Any, common: argparse.ArgumentParser, positive_int: Any) -> None:
    """Add the task commands to the subcommand parsers ``sub``."""
    for name, handler, help_text in (
        ("pause", cmd_pause, "stop firing a task, keeping its definition (shared backend)"),
        ("resume", cmd_resume, "fire a paused task again (shared backend)"),
        ("trigger", cmd_trigger, "queue a run of a task now, for the workers (shared backend)"),
        ("remove", cmd_remove, "remove a task and its schedule; its run history stays (shared backend)"),
    ):
        command = sub.add_parser(name, parents=[common], help=help_text)
        command.add_argument("name", metavar="NAME", help="the task's name")
        add_json_option(command)
        command.set_defaults(handler=handler)

    nxt = sub.add_parser("next", parents=[common], help="a task's next fire times")
    nxt.add_argument("name", metavar="NAME", help="the task's name")
    nxt.add_argument("task_file", nargs="?", metavar="FILE",
                     help="read the task from this task file instead of the backend (nothing is stored)")
    nxt.add_argument("-n", dest="count", type=positive_int, default=5, metavar="N",
                     help="how many fire times (default 5)")
    add_json_option(nxt)
    nxt.set_defaults(handler=cmd_next)


def _shared(scheduler: Any, command: str) -> None:
    if not scheduler.asyncio_scheduler.engine.shared:
        raise SchedulerStateError(
            f"`sts {command}` needs a backend that processes share, such as redis (scheduler_backend: redis); "
            f"the memory backend keeps tasks inside the process that runs them. Change the task file "
            f"instead (`enabled: false` pauses a task) and reload it: send SIGHUP to `sts run`, or use "
            f"`sts run --watch`"
        )


def _print_task(args: argparse.Namespace, task: Task, message: str) -> int:
    if args.json:
        print_json({"name": task.name, "state": "active" if task.enabled else "paused", "version": task.version})
    else:
        print(message)
    return EXIT_OK


def cmd_pause(args: argparse.Namespace, config: Any) -> int:
    """Pause a stored task (a new version with ``enabled: false``)."""
    with open_scheduler(config) as scheduler:
        _shared(scheduler, "pause")
        before = scheduler.get_task(args.name)
        task = scheduler.pause_task(args.name)
    if before is not None and not before.enabled:
        return _print_task(args, task, f"{task.name} was already paused (version {task.version})")
    return _print_task(args, task, f"paused {task.name} (version {task.version}); `sts resume {task.name}` "
                       "fires it again")


def cmd_resume(args: argparse.Namespace, config: Any) -> int:
    """Resume a paused task (a new version with ``enabled: true``, counting from now)."""
    with open_scheduler(config) as scheduler:
        _shared(scheduler, "resume")
        before = scheduler.get_task(args.name)
        task = scheduler.resume_task(args.name)
        nxt = scheduler.next_fire_time(task.name)
    if before is not None and before.enabled:
        return _print_task(args, task, f"{task.name} is not paused (version {task.version})")
    when = format_time(nxt, display_zone(config)) if nxt else "none (started by its parents, or done)"
    return _print_task(args, task, f"resumed {task.name} (version {task.version}); next fire {when}")


def cmd_trigger(args: argparse.Namespace, config: Any) -> int:
    """Queue a run of a stored task now; a worker (``sts run``, ``sts worker``) runs it."""
    with open_scheduler(config) as scheduler:
        _shared(scheduler, "trigger")
        run = scheduler.fire_now(args.name)
    if args.json:
        print_json(run.to_dict())
    elif run.state is RunState.SKIPPED:
        print(f"{args.name} not run: {run.reason} (run {run.id})")
    else:
        waits = " (it waits for a running instance to end: max_instances)" if run.waits_for_instance else ""
        print(f"queued run {run.id} of {args.name} for the workers{waits}; once one has taken it, "
              f"`sts runs {run.id}` shows how it went")
    return EXIT_FAILED if run.state is RunState.SKIPPED else EXIT_OK


def cmd_remove(args: argparse.Namespace, config: Any) -> int:
    """Remove a stored task and its schedule (a run in flight finishes; run history stays)."""
    with open_scheduler(config) as scheduler:
        _shared(scheduler, "remove")
        scheduler.remove_task(args.name)
    if args.json:
        print_json({"name": args.name, "removed": True})
    else:
        print(f"removed {args.name}")
    return EXIT_OK


def cmd_next(args: argparse.Namespace, config: Any) -> int:
    """The next ``-n`` fire times of a task, stored or in a task file."""
    with open_scheduler(config) as scheduler:
        engine = scheduler.asyncio_scheduler.engine
        if args.task_file:
            plan = engine.compile(_from_file(scheduler, args.task_file, args.name))
            first = engine.first_fire(plan)
        else:
            task = scheduler.get_task(args.name)
            if task is None:
                raise TaskNotFoundError(f"no task named {args.name!r}{memory_hint(scheduler, 'tasks')}")
            plan, first = engine.compile(task), scheduler.next_fire_time(task.name)
        if plan.trigger_error is not None:  # only the trigger is needed here, not the function
            raise STSError(f"task {plan.task.name!r}: {plan.trigger_error}")
        task = plan.task
        times, note = _upcoming(plan, first, args.count)
    if args.json:
        print_json({"name": task.name, "state": "active" if task.enabled else "paused",
                     "next_fires": [t.isoformat() for t in times], "note": note})
        return EXIT_OK
    zone = display_zone(config)
    for when in times:
        print(format_time(when, zone))
    if note:
        print(f"({task.name}: {note})")
    return EXIT_OK


def _from_file(scheduler: Any, path: str, name: str) -> Task:
    from pathlib import Path

    from sts_core.taskfile import validate_task_file

    inner = scheduler.asyncio_scheduler
    tasks = validate_task_file(Path(path), plugins=inner.plugins, resolve_function=inner.functions.resolve,
                               default_timezone=inner.engine.defaults.timezone)
    task = next((task for task in tasks if task.name == name), None)
    if task is None:
        names = ", ".join(task.name for task in tasks) or "none"
        raise TaskNotFoundError(f"{path} has no task named {name!r} (its tasks: {names})")
    return task


def _upcoming(plan: Any, first: datetime | None, count: int) -> tuple[list[datetime], str | None]:
    """Up to ``count`` fire times from ``first`` on, and a note when there are fewer."""
    task = plan.task
    if not task.enabled:
        return [], "paused: it does not fire until `sts resume`"
    if plan.trigger is None:
        return [], ("fires when its parents " + ", ".join(sorted(plan.parents)) + " succeed") if plan.parents \
            else "no trigger: it runs once, when it is added"
    if first is None:
        return [], "no next fire time is stored for it (done, or see the scheduler's log)"
    times: list[datetime] = []
    when: datetime | None = first
    while when is not None and len(times) < count:
        times.append(when)
        when = plan.trigger.next_fire(when)
    return times, None if len(times) == count else "no further fire times (the trigger is exhausted)"
