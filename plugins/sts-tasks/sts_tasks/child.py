"""The process executor's child: ``python -m sts_tasks.child``. Imports and calls one function.

Protocol (JSON only, never pickle):

- stdin carries one request ``{"function": "package.module:attr", "args": [...],
  "kwargs": {...}, "sys_path": [...]}``; ``sys_path`` entries of the parent come first, so
  the child imports the same modules the parent would;
- file descriptor 1 is the reply channel: at start the child keeps a private copy of it and
  points fd 1 at fd 2, so whatever the function prints (stdout and stderr, its own child
  processes included) goes to the output pipe and cannot corrupt the reply;
- the reply is ``{"ok": true, "result": ...}`` or ``{"ok": false, "type": ..., "message":
  ..., "traceback": ...}``.

This module imports only the standard library, so the child starts fast.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
from collections.abc import Awaitable
from typing import Any

from sts.plugin import task_traceback


def main() -> int:
    """Serve one request; the exit status is 0 whenever a reply was written."""
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        request = json.loads(sys.stdin.buffer.read())
        _extend_sys_path(request.get("sys_path") or [])
        reply = _call(request["function"], request.get("args") or [], request.get("kwargs") or {})
    except Exception as exc:  # noqa: BLE001 - a malformed request is reported, not crashed on
        reply = _failure(exc)
    with os.fdopen(reply_fd, "wb") as channel:
        channel.write(_encode(reply))
    return 0


def _extend_sys_path(parent_path: list[str]) -> None:
    sys.path[:] = parent_path + [entry for entry in sys.path if entry not in parent_path]


def _call(path: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        result = _import(path)(*args, **kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
    except BaseException as exc:  # noqa: BLE001 - SystemExit from the function is a failure to report too
        return _failure(exc)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return {"ok": True, "result": result}


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _import(path: str) -> Any:
    module_name, _, attr_path = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        target = getattr(target, part)
    return target


def _failure(exc: BaseException) -> dict[str, Any]:
    return {
        "ok": False,
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": task_traceback(exc, ("__main__", "sts_tasks", "sts_core")),  # this module runs as __main__
    }


def _encode(reply: dict[str, Any]) -> bytes:
    try:
        return json.dumps(reply).encode()
    except (TypeError, ValueError) as exc:
        result = reply.get("result")
        summary = repr(result)
        if len(summary) > 200:
            summary = summary[:200] + "..."
        return json.dumps(
            {
                "ok": False,
                "type": "TypeError",
                "message": (
                    f"the function returned {summary}, which is not JSON-serialisable ({exc}); "
                    "the process executor sends results back as JSON: return plain data "
                    "(dict, list, str, int, float, bool, None)"
                ),
                "traceback": "",
            }
        ).encode()


if __name__ == "__main__":
    sys.exit(main())
