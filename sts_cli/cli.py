"""The ``sts`` command line: run, scheduler, worker and validate here; the commands that look
(``sts_cli.inspect_commands``) and act on tasks (``sts_cli.manage_commands``); plus plugin commands.

User mistakes (a bad task file, a bad config, an unknown plugin) print a message naming the
file, line and key path and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sts_core import __version__

log = logging.getLogger("sts.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

BUILTIN_COMMANDS = ("run", "scheduler", "worker", "validate", "plugins", "tasks", "runs",
                    "pause", "resume", "trigger", "remove", "next")


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
    from sts_cli.reloading import TaskFileReloader
    from sts_core.blocking import TaskScheduler
    from sts_core.logsetup import configure_logging

    if getattr(args, "concurrency", None):
        config.set("executor.concurrency", args.concurrency)
    task_file = getattr(args, "task_file", None)
    if getattr(args, "watch", False) and not task_file:
        _print_error("--watch needs a task file to watch")
        return EXIT_USAGE
    configure_logging(config)
    sched = TaskScheduler(config=config)
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
    reloader = TaskFileReloader(sched, task_file, tasks) if task_file else None
    hangup = _HangupFlag()
    try:
        sched.start(scheduler=scheduler, worker=worker)
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # garbage collector's full passes, which otherwise stall firing for tens of
        # milliseconds with many tasks (bench/engine_quick.py: p99 lateness 63 ms -> 2 ms at
        # 10,000 tasks).
        gc.freeze()
        stopped = _wait_reloading(sched, args.run_for, reloader, hangup, watch=getattr(args, "watch", False))
    except KeyboardInterrupt:  # a signal, which the scheduler's handler has acted on, or one before it was installed
        stopped = False
    finally:
        hangup.restore()
    if not stopped:
        sched.stop()
    if scheduler and worker:
        _print_summary(sched)
    return EXIT_OK


#: How often ``--watch`` looks at the task file, in seconds.
WATCH_INTERVAL = 1.0


def _wait_reloading(sched: Any, run_for: float | None, reloader: Any, hangup: _HangupFlag, *, watch: bool) -> bool:
    """Wait until the scheduler stops or ``run_for`` ends (True if it stopped), reloading the task
    file on SIGHUP and, with ``watch``, when the file changes."""
    deadline = None if run_for is None else time.monotonic() + run_for
    next_look = time.monotonic() + WATCH_INTERVAL
    while True:
        left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
        if sched.wait(max(left, 0.0)):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        if hangup.take():
            if reloader is None:
                log.warning("received SIGHUP: no task file to reload (give one on the command line)")
            else:
                log.info("received SIGHUP: reloading %s", reloader.path)
                reloader.reload()
        elif watch and reloader is not None and time.monotonic() >= next_look:
            next_look = time.monotonic() + WATCH_INTERVAL
            if reloader.changed_on_disk():
                log.info("%s changed: reloading it", reloader.path)
                reloader.reload()


class _HangupFlag:
    """SIGHUP asks for a reload (instead of ending the process): the handler only sets a flag,
    which the main loop takes."""

    def __init__(self) -> None:
        self._seen = False
        self._previous: Any = None
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGHUP, self._on_hangup)

    def _on_hangup(self, signum: int, frame: Any) -> None:
        self._seen = True

    def take(self) -> bool:
        """True once per SIGHUP received (several before a look count as one)."""
        seen, self._seen = self._seen, False
        return seen

    def restore(self) -> None:
        """Put back the handler SIGHUP had before."""
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None


def _print_summary(scheduler: Any) -> None:
    """A table of run outcomes per task (read after the scheduler stopped)."""
    from sts_cli.tables import render_table

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


# -- parser ---------------------------------------------------------------------------------------------


def build_parser(plugin_commands: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The argument parser, with the commands plugins registered."""
    from sts_cli import inspect_commands, manage_commands

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
    run.add_argument("--watch", action="store_true", help="reload the task file when it changes (checked "
                     "every second); SIGHUP reloads it too")
    run.set_defaults(handler=cmd_run)

    scheduler = sub.add_parser("scheduler", parents=[common],
                               help="only fire tasks; workers elsewhere run them (needs a shared backend)")
    scheduler.add_argument("task_file", nargs="?", help="task file to add first (tasks already stored fire anyway)")
    scheduler.add_argument("--watch", action="store_true", help="reload the task file when it changes (checked "
                           "every second); SIGHUP reloads it too")
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
    validate.add_argument("task_file", metavar="FILE", help="task file (YAML or JSON) with a `tasks:` list")
    validate.set_defaults(handler=cmd_validate)

    inspect_commands.add_commands(sub, common, _positive_int)
    manage_commands.add_commands(sub, common, _positive_int)

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

