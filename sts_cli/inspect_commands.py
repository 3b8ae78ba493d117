"""The ``sts`` commands that look without changing anything: ``plugins``, ``tasks``, ``runs``.

Each prints a table, or with ``--json`` a JSON document (timestamps in ISO 8601 UTC). Table
timestamps are shown in the config's ``timezone`` with their offset (``Z`` for UTC).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

from sts_cli.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _plugins, _print_error
from sts_cli.tables import format_time, render_table
from sts_core.run import Run, RunState
from sts_core.task import Task


def add_commands(sub: Any, common: argparse.ArgumentParser, positive_int: Any) -> None:
    """Add ``plugins``, ``tasks`` and ``runs`` to the subcommand parsers ``sub``."""
    plugins = sub.add_parser("plugins", parents=[common], help="list discovered plugins")
    add_json_option(plugins)
    plugins.set_defaults(handler=cmd_plugins)

    tasks = sub.add_parser("tasks", parents=[common], help="list tasks and their next fire times")
    tasks.add_argument("task_file", nargs="?", help="list the tasks of this file (default: the tasks stored in "
                       "the backend)")
    add_json_option(tasks)
    tasks.set_defaults(handler=cmd_tasks)

    runs = sub.add_parser("runs", parents=[common], help="show recorded runs, or one run in full")
    runs.add_argument("run_id", nargs="?", metavar="RUN_ID",
                      help="show this run in full: error, traceback, output and timings")
    runs.add_argument("--task", help="only runs of this task")
    runs.add_argument("--failed", action="store_true", help="only failed and timed-out runs")
    runs.add_argument("--state", action="append", choices=[state.value for state in RunState],
                      metavar="STATE", help="only runs in this state (repeatable): %(choices)s")
    runs.add_argument("--limit", type=positive_int, default=50, help="at most this many runs (default 50)")
    add_json_option(runs)
    runs.set_defaults(handler=cmd_runs)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` flag of a command that prints data."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout."""
    print(json.dumps(data, indent=2, ensure_ascii=False))


def display_zone(config: Any) -> ZoneInfo:
    """The time zone tables show timestamps in: the config's ``timezone``."""
    return ZoneInfo(config.get("timezone", "UTC"))


@contextmanager
def open_scheduler(config: Any) -> Iterator[Any]:
    """A blocking ``TaskScheduler`` on the configured backend, stopped afterwards."""
    from sts_core.blocking import TaskScheduler

    scheduler = TaskScheduler(config=config)
    try:
        yield scheduler
    finally:
        scheduler.stop()


def memory_hint(scheduler: Any, what: str) -> str:
    """Why the memory backend shows nothing from another process ('' on a shared backend)."""
    if scheduler.asyncio_scheduler.engine.shared:
        return ""
    return (f" (The memory backend keeps {what} only inside the running process, such as `sts run`; "
            "use a shared backend such as redis to see them from another process.)")


# -- plugins ----------------------------------------------------------------------------------------------


def cmd_plugins(args: argparse.Namespace, config: Any) -> int:
    """List every discovered plugin (on a terminal, fitted to its width)."""
    from sts_core.errors import ConfigError

    plugins = _plugins(config)
    infos = plugins.plugin_infos()
    try:
        off = plugins.switched_off(config.validate_sections(plugins))
    except ConfigError:
        off = frozenset()  # `sts plugins` must work with a broken config; `sts validate` reports it
    failed = EXIT_FAILED if any(i.status == "failed" for i in infos) else EXIT_OK
    if args.json:
        print_json([
            {"name": i.name, "distribution": i.distribution, "version": i.version, "status": _plugin_status(i, off),
             "error": i.error, "provides": list(i.provides), "hooks": list(i.hooks)}
            for i in infos
        ])
        return failed
    rows = [
        [i.name, i.distribution, i.version, _plugin_status(i, off), ", ".join(i.provides), ", ".join(i.hooks)]
        for i in infos
    ]
    # On a terminal (or with COLUMNS set) the table fits its width; piped, each plugin keeps one line for grep.
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() or "COLUMNS" in os.environ else None
    print(render_table(["name", "distribution", "version", "status", "provides", "hooks"], rows,
                       width=width, wrap={3, 4, 5}))
    return failed


def _plugin_status(info: Any, off: frozenset[str]) -> str:
    if info.error:
        return f"{info.status}: {info.error}"
    if info.status == "enabled" and info.name in off:
        return "enabled, off in config (enabled: false)"
    return str(info.status)


# -- tasks ------------------------------------------------------------------------------------------------


def cmd_tasks(args: argparse.Namespace, config: Any) -> int:
    """List tasks (of a task file, or stored in the backend) with their next fire times."""
    with open_scheduler(config) as scheduler:
        if args.task_file:
            scheduler.load_task_file(args.task_file)
        listed = [(task, describe_trigger(scheduler, task), scheduler.next_fire_time(task.name),
                   _last_run(scheduler, task.name)) for task in scheduler.list_tasks()]
        hint = "" if args.task_file else memory_hint(scheduler, "tasks")
        backend = config.get("scheduler_backend")
    if args.json:
        print_json([_task_json(task, trigger, nxt, last) for task, trigger, nxt, last in listed])
        return EXIT_OK
    if not listed:
        print(f"No tasks stored in the {backend} backend." + hint if not args.task_file else "No tasks.")
        return EXIT_OK
    zone = display_zone(config)
    rows = [[task.name, task.type, trigger, format_time(nxt, zone), task.retries, task.version,
             "yes" if task.enabled else "no (paused)", _outcome(last)] for task, trigger, nxt, last in listed]
    print(render_table(["name", "type", "trigger", "next fire", "retries", "version", "enabled", "last run"], rows))
    return EXIT_OK


def _last_run(scheduler: Any, name: str) -> Run | None:
    """The task's newest recorded run (a failing task, say one no worker can load, shows here)."""
    runs = scheduler.runs(name, None, 1)
    return runs[0] if runs else None


def _outcome(run: Run | None) -> str | None:
    """``succeeded``, or ``failed: TaskLoadError`` with the error type of a failed run."""
    if run is None:
        return None
    return f"{run.state.value}: {run.error_type}" if run.error_type else run.state.value


def describe_trigger(scheduler: Any, task: Task) -> str:
    """``every 1h``, ``cron ... (UTC)``, ``after a, b`` or ``once, at start``."""
    plan = scheduler.asyncio_scheduler.engine.plans.current(task.name)
    if plan is not None and plan.trigger is not None:
        return str(plan.trigger.describe())
    if task.parent_tasks:
        return "after " + ", ".join(task.parent_tasks)
    if task.trigger_kind is not None:  # stored, but this process cannot compile it (see the scheduler's log)
        return task.trigger_kind
    return "once, at start"


def _task_json(task: Task, trigger: str, next_fire: Any, last: Run | None) -> dict[str, Any]:
    return {
        "name": task.name,
        "state": "active" if task.enabled else "paused",
        "trigger": trigger,
        "next_fire": next_fire.isoformat() if next_fire else None,
        "version": task.version,
        "last_run": None if last is None else {
            key: value for key, value in last.to_dict().items()
            if key in ("id", "state", "attempt", "ended_at", "error_type", "error_message")
        },
        "definition": task.to_dict(),
    }


# -- runs -------------------------------------------------------------------------------------------------


def cmd_runs(args: argparse.Namespace, config: Any) -> int:
    """Show recorded runs, newest first; or one run in full."""
    if args.run_id:
        return _show_run(args, config)
    with open_scheduler(config) as scheduler:
        states = ["failed", "timed_out"] if args.failed else (args.state or None)
        runs = scheduler.runs(args.task, states, args.limit)
        hint = memory_hint(scheduler, "runs")
    if args.json:
        print_json([run.to_dict() for run in runs])
        return EXIT_OK
    if not runs:
        print("No runs recorded." + hint)
        return EXIT_OK
    zone = display_zone(config)
    rows = [
        [format_time(r.started_at, zone), r.task_name, r.attempt, r.state.value,
         f"{r.duration:.3f}s" if r.duration is not None else None,
         f"{r.error_type}: {r.error_message}" if r.error_type else r.result, r.id]
        for r in runs
    ]
    print(render_table(["started", "task", "attempt", "state", "duration", "result / error", "run id"], rows))
    return EXIT_OK


def _show_run(args: argparse.Namespace, config: Any) -> int:
    with open_scheduler(config) as scheduler:
        run = scheduler.get_run(args.run_id)
        hint = memory_hint(scheduler, "runs")
    if run is None:
        _print_error(f"no run with id {args.run_id!r}" + (hint or " (a run queued by `sts trigger` is recorded "
                                                              "once a worker takes it)"))
        return EXIT_USAGE
    if args.json:
        print_json(run.to_dict())
    else:
        print(describe_run(run, display_zone(config)))
    return EXIT_OK


def describe_run(run: Run, zone: ZoneInfo) -> str:
    """A run in full: one ``field  value`` line each, then its traceback and output."""
    fields = [
        ("run", run.id),
        ("task", f"{run.task_name} (version {run.task_version})"),
        ("state", run.state.value),
        ("attempt", run.attempt),
        ("reason", run.reason),
        ("scheduled", format_time(run.scheduled_for, zone)),
        ("created", format_time(run.created_at, zone)),
        ("started", format_time(run.started_at, zone)),
        ("ended", format_time(run.ended_at, zone)),
        ("duration", f"{run.duration:.3f}s" if run.duration is not None else None),
        ("worker", run.worker),
        ("result", run.result),
        ("error", f"{run.error_type}: {run.error_message}" if run.error_type else None),
        ("retry at", format_time(run.retry_at, zone)),
    ]
    lines = [f"{name:<10} {value}" for name, value in fields if value is not None]
    for title, text in (("traceback", run.traceback), ("output", run.output)):
        if text:
            lines += ["", f"{title}:", *("  " + line for line in text.rstrip("\n").splitlines())]
    return "\n".join(lines)
