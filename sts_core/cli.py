"""The ``sts`` command line: run, validate, plugins, tasks, runs, plus plugin commands.

User mistakes (a bad task file, a bad config, an unknown plugin) print a message naming the
file, line and key path and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sts_core import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

BUILTIN_COMMANDS = ("run", "scheduler", "worker", "validate", "plugins", "tasks", "runs")


def _load_config(path: str | None) -> Any:
    from sts_core.config import Config

    path = path or os.environ.get("STS_CONFIG")
    return Config.from_file(path) if path else Config()


def _plugins(config: Any) -> Any:
    """The plugin manager; with ``config`` None (unreadable) only ``STS_DISABLE_PLUGINS`` disables."""
    from sts_core.plugins import PluginManager

    disable = config.get("plugins.disable") if config is not None else None
    return PluginManager(disable=disable or ())


def _print_error(message: str) -> None:
    print(f"sts: error: {message}", file=sys.stderr)


def _print_warning(message: str) -> None:
    print(f"sts: warning: {message}", file=sys.stderr, flush=True)


# -- argument types (a bad value is argparse's usual "sts COMMAND: error: argument ...", exit 2) --------


def _duration(text: str) -> float:
    from sts_core.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return number


# -- commands -----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, config: Any) -> int:
    """Run the tasks of a task file until Ctrl-C (or ``--for``): scheduler and worker in one process."""
    api = getattr(args, "api", False)
    if api and "api" not in _plugins(config).config_sections():
        _print_error('--api needs the api plugin, which is not installed or is disabled: '
                     'pip install "SimpleTaskScheduler[rest]"')
        return EXIT_USAGE
    if api:
        config.set("api.enabled", True)  # the plugin's section: it serves the REST API once started
    return _serve(args, config, scheduler=True, worker=True)


def cmd_scheduler(args: argparse.Namespace, config: Any) -> int:
    """Only fire tasks (a shared backend delivers the runs to ``sts worker`` processes)."""
    return _serve(args, config, scheduler=True, worker=False)


def cmd_worker(args: argparse.Namespace, config: Any) -> int:
    """Only execute runs that schedulers (``sts scheduler`` or ``sts run``) put in the shared backend."""
    return _serve(args, config, scheduler=False, worker=True)


def _serve(args: argparse.Namespace, config: Any, *, scheduler: bool, worker: bool) -> int:
    from sts_core.blocking import TaskScheduler
    from sts_core.logsetup import configure_logging

    if getattr(args, "concurrency", None):
        config.set("executor.concurrency", args.concurrency)
    configure_logging(config)
    sched = TaskScheduler(config=config)
    task_file = getattr(args, "task_file", None)
    try:
        tasks = sched.load_task_file(task_file) if task_file else []
    except BaseException:
        sched.stop()
        raise
    if task_file:
        print(f"Loaded {len(tasks)} task(s) from {task_file}", flush=True)
    if scheduler and not tasks and not sched.list_tasks():
        _print_warning("no tasks: nothing is scheduled" + ("" if task_file else " (no task file given)")
                       + "; running anyway, so that plugins can add tasks")
    try:
        sched.start(scheduler=scheduler, worker=worker)
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # garbage collector's full passes, which otherwise stall firing for tens of
        # milliseconds with many tasks (bench/engine_quick.py: p99 lateness 63 ms -> 2 ms at
        # 10,000 tasks).
        gc.freeze()
        stopped = sched.wait(args.run_for)
    except KeyboardInterrupt:  # start() installs the signal handlers; this covers Ctrl-C before they are
        stopped = False
    if not stopped:
        sched.stop()
    if scheduler and worker:
        _print_summary(sched)
    return EXIT_OK


def _print_summary(scheduler: Any) -> None:
    """A table of run outcomes per task (read after the scheduler stopped)."""
    from sts_core.tables import render_table

    try:
        runs = scheduler.runs(limit=100_000)
    except Exception:  # noqa: BLE001 - a summary is a courtesy; the backend may be gone
        return
    finally:
        scheduler.stop()
    if not runs:
        print("No runs recorded.")
        return
    per_task: dict[str, Counter[str]] = {}
    for run in runs:
        per_task.setdefault(run.task_name, Counter())[run.state.value] += 1
    states = ["succeeded", "failed", "timed_out", "retrying", "skipped", "cancelled", "interrupted"]
    states += [s for s in ("lost", "duplicate", "poison") if any(s in counts for counts in per_task.values())]
    rows = [[name, *(counts.get(s, 0) for s in states)] for name, counts in sorted(per_task.items())]
    print("\nRun summary")
    print(render_table(["task", *states], rows))


def cmd_validate(args: argparse.Namespace, config: Any) -> int:
    """Check a task file (and the config) without running anything."""
    from sts_core.functions import FunctionRegistry
    from sts_core.taskfile import validate_task_file

    plugins = _plugins(config)
    config.validate_sections(plugins)
    plugins.configure(config)  # plugins check task options against their settings (say, webhook names)
    tasks = validate_task_file(
        args.task_file,
        plugins=plugins,
        resolve_function=FunctionRegistry().resolve,
        default_timezone=config.get("timezone", "UTC"),
    )
    print(f"{args.task_file}: OK, {len(tasks)} task(s)")
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace, config: Any) -> int:
    """List every discovered plugin."""
    from sts_core.errors import ConfigError
    from sts_core.tables import render_table

    plugins = _plugins(config)
    infos = plugins.plugin_infos()
    try:
        off = plugins.switched_off(config.validate_sections(plugins))
    except ConfigError:
        off = frozenset()  # `sts plugins` must work with a broken config; `sts validate` reports it
    rows = [
        [i.name, i.distribution, i.version, _plugin_status(i, off), ",".join(i.provides), ",".join(i.hooks)]
        for i in infos
    ]
    print(render_table(["name", "distribution", "version", "status", "provides", "hooks"], rows, max_width=80))
    return EXIT_FAILED if any(i.status == "failed" for i in infos) else EXIT_OK


def _plugin_status(info: Any, off: frozenset[str]) -> str:
    if info.error:
        return f"{info.status}: {info.error}"
    if info.status == "enabled" and info.name in off:
        return "enabled, off in config (enabled: false)"
    return str(info.status)


def cmd_tasks(args: argparse.Namespace, config: Any) -> int:
    """List tasks (of a task file, or stored in the backend) with their next fire times."""
    from sts_core.blocking import TaskScheduler
    from sts_core.tables import render_table

    scheduler = TaskScheduler(config=config)
    try:
        if args.task_file:
            scheduler.load_task_file(args.task_file)
        rows = []
        for task in scheduler.list_tasks():
            plan = scheduler.asyncio_scheduler.engine.plans.current(task.name)
            trigger = plan.trigger.describe() if plan and plan.trigger else (
                "after " + ", ".join(task.parent_tasks) if task.parent_tasks else "once, at start"
            )
            nxt = scheduler._call(scheduler.asyncio_scheduler.next_fire_time(task.name))
            rows.append([
                task.name, task.type, trigger, nxt.strftime("%Y-%m-%d %H:%M:%S %Z") if nxt else None,
                task.retries, task.version, "yes" if task.enabled else "no",
            ])
    finally:
        scheduler.stop()
    if not rows:
        print("No tasks." + ("" if args.task_file else " (The memory backend keeps tasks only inside a running "
                               "`sts run`; give a task file or use a shared backend.)"))
        return EXIT_OK
    print(render_table(["name", "type", "trigger", "next fire", "retries", "version", "enabled"], rows))
    return EXIT_OK


def cmd_runs(args: argparse.Namespace, config: Any) -> int:
    """Show recorded runs, newest first."""
    from sts_core.blocking import TaskScheduler
    from sts_core.tables import render_table

    scheduler = TaskScheduler(config=config)
    try:
        states = ["failed", "timed_out"] if args.failed else (args.state or None)
        runs = scheduler.runs(args.task, states, args.limit)
    finally:
        scheduler.stop()
    if not runs:
        print("No runs recorded." + (" (The memory backend keeps runs only inside the running process; "
                                       "use a shared backend to read them from another process.)"
                                       if config.get("scheduler_backend") == "memory" else ""))
        return EXIT_OK
    rows = [
        [r.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.started_at else None, r.task_name, r.attempt, r.state.value,
         f"{r.duration:.3f}s" if r.duration is not None else None,
         f"{r.error_type}: {r.error_message}" if r.error_type else r.result, r.id]
        for r in runs
    ]
    print(render_table(["started", "task", "attempt", "state", "duration", "result / error", "run id"], rows))
    return EXIT_OK


# -- parser ---------------------------------------------------------------------------------------------


def build_parser(plugin_commands: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The argument parser, with the commands plugins registered."""
    from sts_core.model import RunState

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="config file (YAML or JSON; default: $STS_CONFIG, "
                        "else the packaged defaults)")
    parser = argparse.ArgumentParser(
        prog="sts", description="STS, the Simple Task Scheduler.", parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"sts {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the tasks of a task file until Ctrl-C")
    run.add_argument("task_file", nargs="?", help="task file (YAML or JSON) with a `tasks:` list")
    run.add_argument("--for", dest="run_for", metavar="DURATION", type=_duration,
                     help="stop after this long (e.g. 90s, 5m, 1h30m)")
    run.add_argument("--concurrency", type=_positive_int, metavar="N",
                     help="run at most N runs at once (default: executor.concurrency)")
    run.add_argument("--api", action="store_true", help="also serve the REST API (the api plugin; api.enabled)")
    run.set_defaults(handler=cmd_run)

    scheduler = sub.add_parser("scheduler", parents=[common],
                               help="only fire tasks; workers elsewhere run them (needs a shared backend)")
    scheduler.add_argument("task_file", nargs="?", help="task file to add first (tasks already stored fire anyway)")
    scheduler.add_argument("--for", dest="run_for", metavar="DURATION", type=_duration,
                           help="stop after this long (e.g. 90s, 5m, 1h30m)")
    scheduler.set_defaults(handler=cmd_scheduler)

    worker = sub.add_parser("worker", parents=[common],
                            help="only run what schedulers fired (needs a shared backend)")
    worker.add_argument("--concurrency", type=_positive_int, metavar="N",
                        help="run at most N runs at once (default: executor.concurrency)")
    worker.add_argument("--for", dest="run_for", metavar="DURATION", type=_duration,
                        help="stop after this long (e.g. 90s, 5m, 1h30m)")
    worker.set_defaults(handler=cmd_worker)

    validate = sub.add_parser("validate", parents=[common], help="check a task file without running it")
    validate.add_argument("task_file")
    validate.set_defaults(handler=cmd_validate)

    plugins = sub.add_parser("plugins", parents=[common], help="list discovered plugins")
    plugins.set_defaults(handler=cmd_plugins)

    tasks = sub.add_parser("tasks", parents=[common], help="list tasks and their next fire times")
    tasks.add_argument("task_file", nargs="?", help="list the tasks of this file")
    tasks.set_defaults(handler=cmd_tasks)

    runs = sub.add_parser("runs", parents=[common], help="show recorded runs")
    runs.add_argument("--task", help="only runs of this task")
    runs.add_argument("--failed", action="store_true", help="only failed and timed-out runs")
    runs.add_argument("--state", action="append", choices=[state.value for state in RunState],
                      metavar="STATE", help="only runs in this state (repeatable): %(choices)s")
    runs.add_argument("--limit", type=_positive_int, default=50, help="at most this many runs (default 50)")
    runs.set_defaults(handler=cmd_runs)

    for name, reg in (plugin_commands or {}).items():
        if name in sub.choices:
            continue
        command = sub.add_parser(name, parents=[common], help=f"{reg.value} [plugin {reg.plugin}]")
        reg.extra["add_arguments"](command)
        command.set_defaults(handler=reg.extra["handler"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sts`` command.

    The config is loaded only once the command line is parsed, so ``--version`` and ``--help``
    work whatever the config holds; plugins are scanned only when the command may be theirs.
    """
    from sts_core.errors import STSError, ValidationError

    argv = list(sys.argv[1:] if argv is None else argv)
    if os.getcwd() not in sys.path:  # like `python -m`: task functions import from the current directory
        sys.path.insert(0, os.getcwd())
    try:
        config_path, command = _config_path_and_command(argv)
        config = None
        plugin_commands = {}
        if _wants_plugin_commands(command, argv):
            try:
                config = _load_config(config_path)
            except STSError:  # reported after parsing, so that --help works; meanwhile no plugins.disable
                config = None
            plugin_commands = _plugins(config).commands()
        parser = build_parser(plugin_commands)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        if config is None:
            config = _load_config(config_path)
        return int(args.handler(args, config) or EXIT_OK)
    except ValidationError as exc:
        _print_error("invalid input:")
        for line in exc.lines():
            print(f"  {line}", file=sys.stderr)
        return EXIT_USAGE
    except STSError as exc:
        _print_error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _config_path_and_command(argv: list[str]) -> tuple[str | None, str | None]:
    """The ``--config`` value and the command (first positional argument), read without failing:
    the real parser reports any mistake in the command line."""
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--config")
    try:
        known, rest = pre.parse_known_args(argv)
    except argparse.ArgumentError:
        return None, None
    command = next((arg for arg in rest if not arg.startswith("-")), None)
    return known.config, command


def _wants_plugin_commands(command: str | None, argv: list[str]) -> bool:
    """Plugin commands are needed for a command that is not built in, and for the help listing
    (``sts``, ``sts --help``), but not for built-in commands or ``sts --version``."""
    if command is None:
        return "--version" not in argv
    return command not in BUILTIN_COMMANDS


if __name__ == "__main__":
    raise SystemExit(main())
