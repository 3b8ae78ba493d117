"""The parent side of the process executor: run one call in a fresh ``sts_tasks.child`` process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from sts_tasks.capture import Sink
from sts_tasks.errors import RemoteError, RemoteTraceback
from sts_tasks.processes import feed, pump, spawn, supervise

CHILD_MODULE = "sts_tasks.child"


def encode_request(import_path: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
    """The JSON request for the child; ``TypeError`` names the argument that is not plain data."""
    for label, value in (("args", list(args)), ("kwargs", dict(kwargs))):
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{label} of {import_path!r} cannot be sent to the child process ({exc}); "
                "executor 'process' passes arguments as JSON: use plain data"
            ) from None
    request = {"function": import_path, "args": list(args), "kwargs": dict(kwargs), "sys_path": sys.path}
    return json.dumps(request).encode()


async def call_in_child(
    import_path: str, args: Sequence[Any], kwargs: Mapping[str, Any], output: Sink, kill_grace: float
) -> Any:
    """Call ``import_path(*args, **kwargs)`` in a new process and return its JSON result.

    The child's stdout and stderr go to ``output``. A child exception raises ``RemoteError``.
    On cancellation the child's process group is stopped (SIGTERM, SIGKILL after
    ``kill_grace`` seconds) before the cancellation propagates.
    """
    request = encode_request(import_path, args, kwargs)
    process = await spawn(
        [sys.executable, "-m", CHILD_MODULE],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    _, reply, _ = await supervise(
        process,
        [feed(process.stdin, request), process.stdout.read(), pump(process.stderr, output)],
        kill_grace,
    )
    return decode_reply(reply, process.returncode)


def decode_reply(reply: bytes, exit_status: int | None) -> Any:
    """The result carried by the child's reply, or the ``RemoteError`` it describes."""
    try:
        data = json.loads(reply) if reply else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or "ok" not in data:
        raise RemoteError(
            "ChildProcessError",
            f"the child process exited with status {exit_status} without sending a result "
            "(the run's output may say why)",
        )
    if data["ok"]:
        return data.get("result")
    remote_traceback = str(data.get("traceback") or "")
    error = RemoteError(str(data.get("type")), str(data.get("message") or ""), remote_traceback)
    if remote_traceback:
        raise error from RemoteTraceback(remote_traceback)
    raise error
