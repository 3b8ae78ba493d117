"""Child processes owned by a run: each in its own process group, output streamed, group killed on cancel.

A run's command may start processes of its own (``sh -c "sleep 30 & sleep 30"``). Every
child is therefore started in a new session, so it leads a process group holding all its
descendants, and a cancelled run (the engine's timeout) signals the whole group: SIGTERM,
then SIGKILL for whatever is left after ``kill_grace`` seconds.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
from collections.abc import Awaitable, Sequence
from typing import Any

from sts_tasks.capture import Sink, echo

_CHUNK = 65536
_POLL = 0.02


async def spawn(argv: Sequence[str], **kwargs: Any) -> asyncio.subprocess.Process:
    """Start ``argv`` as the leader of a new session (and so of a new process group)."""
    return await asyncio.create_subprocess_exec(*argv, start_new_session=True, **kwargs)


async def pump(stream: asyncio.StreamReader, output: Sink) -> None:
    """Copy ``stream`` into ``output`` and to the real standard output (as a function's prints
    are) as UTF-8 text until end of file.

    Decoding is incremental, so a character split between two reads is not mangled; bytes
    that are not UTF-8 become U+FFFD instead of failing the run.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := await stream.read(_CHUNK):
        text = decoder.decode(chunk)
        if text:
            output.write(text)
            echo(text)
    tail = decoder.decode(b"", final=True)
    if tail:
        output.write(tail)
        echo(tail)


async def feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    """Write ``data`` to the child's stdin and close it; a child that exits early is not an error here."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(data)
        await stream.drain()
    stream.close()


async def supervise(
    process: asyncio.subprocess.Process, work: Sequence[Awaitable[Any]], kill_grace: float
) -> list[Any]:
    """Wait for ``work`` (stream pumps) and the process to finish; return the results of ``work``.

    On cancellation (or if any piece of work fails) the process group is terminated and
    reaped before the exception propagates, so nothing the run started outlives it.
    """
    tasks = [asyncio.ensure_future(item) for item in work]
    try:
        results = await asyncio.gather(*tasks)
        await process.wait()
        return results
    except BaseException:
        for task in tasks:
            task.cancel()
        try:
            await terminate_group(process, kill_grace)
        finally:
            await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def terminate_group(process: asyncio.subprocess.Process, kill_grace: float) -> None:
    """SIGTERM the process's group, SIGKILL what is left after ``kill_grace`` seconds, reap the leader.

    Even if this coroutine is itself cancelled while waiting out the grace period, the group
    still gets its SIGKILL.
    """
    group = process.pid
    if _signal_group(group, signal.SIGTERM):
        try:
            await _wait_for_group_exit(process, group, kill_grace)
        finally:
            _signal_group(group, signal.SIGKILL)
    await process.wait()


async def _wait_for_group_exit(process: asyncio.subprocess.Process, group: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), timeout)
    # The leader is gone; its descendants may not be (they were re-parented, not killed).
    while _group_alive(group) and loop.time() < deadline:
        await asyncio.sleep(_POLL)


def _group_alive(group: int) -> bool:
    """True while a process of ``group`` is still running.

    Zombies do not count: where init is slow to reap orphans (containers whose PID 1 is
    not an init) the group would otherwise look alive until the grace period ends.
    """
    if not _signal_group(group, 0):
        return False
    if not os.path.isdir("/proc/self"):
        return True  # no procfs: count every member
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                # After the parenthesised command name: state, ppid, pgrp, ...
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == group and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _signal_group(group: int, signum: int) -> bool:
    """Send ``signum`` to process group ``group``; False when no process is left in it."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        # On some systems a group holding only zombies answers EPERM: nothing left to stop.
        return False
    return True
