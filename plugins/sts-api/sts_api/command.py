"""``sts api``: a process that serves only the REST API, over a shared backend.

It opens the configured backend without firing or executing anything: the ``sts scheduler``,
``sts worker`` or ``sts run`` processes elsewhere do that, and pick up task changes made here
through the backend (with redis, within a second, by its change notices). With the memory
backend tasks live inside one ``sts run`` process, so the API must be served from there:
``sts run --api``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--for DURATION``: stop by itself after this long (for scripts and tests)."""
    parser.add_argument("--for", dest="run_for", metavar="DURATION", type=_duration,
                        help="stop after this long (e.g. 90s, 5m); default: until Ctrl-C or SIGTERM")


def _duration(text: str) -> float:
    from sts.plugin import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_api(args: argparse.Namespace, config: Any) -> int:
    """Serve the API until SIGINT or SIGTERM (or ``--for``); 2 when the backend is not shared."""
    from sts.scheduler import TaskScheduler
    from sts_api.plugin import server_for

    config.set("api.enabled", True)
    scheduler = TaskScheduler(config=config)
    if not scheduler.asyncio_scheduler.shared_backend:
        scheduler.stop()
        print(f"sts: error: `sts api` serves tasks kept in a backend shared between processes, such as redis; "
              f"scheduler_backend is {config.get('scheduler_backend')!r}, whose tasks live only inside the process "
              f"that runs them: use `sts run --api` to serve the API from there", file=sys.stderr)
        return EXIT_USAGE
    try:
        scheduler.start(scheduler=False, worker=False)
    except BaseException:
        scheduler.stop()
        raise
    server = server_for(scheduler.asyncio_scheduler)
    if server is None:
        scheduler.stop()
        print("sts: error: the REST API could not be started (see the log above)", file=sys.stderr)
        return EXIT_FAILED
    print(f"Serving the STS REST API at {server.url} (Ctrl-C or SIGTERM stops)", flush=True)
    stopped = scheduler.wait(args.run_for)
    if not stopped:
        scheduler.stop()
    return EXIT_OK
