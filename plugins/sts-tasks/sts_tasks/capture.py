"""Route what functions print to the output of the run that printed it, and to the real stream.

``sys.stdout`` and ``sys.stderr`` are replaced once, process-wide, by a ``RoutingStream``
that writes every text to the stream it replaced (the tee) and also to the sink of the
current run, found through a ``ContextVar``. Each run sets the variable in its own context
(its asyncio task, or the copied context its thread-pool call runs in), so concurrent runs
never see each other's output. Writes made outside any run pass through unchanged.
"""

from __future__ import annotations

import contextvars
import sys
from typing import Any, Protocol, TextIO


class Sink(Protocol):
    """Where a run's captured text goes (``ExecutionContext.output`` satisfies this)."""

    def write(self, text: str) -> None: ...


current_sink: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("sts_tasks_output", default=None)


class ClosableSink:
    """Forwards writes to a run's output until ``close()``.

    A thread cannot be stopped at a timeout; closing its sink keeps what it prints later out
    of the output of a run that has already ended.
    """

    __slots__ = ("_output", "closed")

    def __init__(self, output: Sink) -> None:
        self._output = output
        self.closed = False

    def write(self, text: str) -> None:
        """Forward ``text`` unless the run has ended."""
        if not self.closed:
            self._output.write(text)

    def close(self) -> None:
        """Drop everything written from now on."""
        self.closed = True


class RoutingStream:
    """A text stream proxy: writes go to the wrapped stream and to the current run's sink."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    @property
    def wrapped(self) -> TextIO:
        """The stream this proxy replaced."""
        return self._stream

    def write(self, text: str) -> int:
        """Write ``text`` to the current run's sink (if any) and to the wrapped stream."""
        sink = current_sink.get()
        if sink is not None:
            sink.write(text)
        return self._stream.write(text)

    def writelines(self, lines: Any) -> None:
        """Write each line (no separators added, as ``io.TextIOBase.writelines``)."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        # flush, fileno, isatty, encoding, buffer, ...: whatever the real stream offers.
        return getattr(self._stream, name)


def install() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` routing streams (cheap when they already are).

    Called before every capturing run rather than once at import, because test runners and
    applications may swap ``sys.stdout`` later; a routing stream is never wrapped twice.
    """
    if type(sys.stdout) is not RoutingStream and sys.stdout is not None:
        sys.stdout = RoutingStream(sys.stdout)
    if type(sys.stderr) is not RoutingStream and sys.stderr is not None:
        sys.stderr = RoutingStream(sys.stderr)


def echo(text: str) -> None:
    """Write ``text`` to the real standard output (not to any run's sink): what a child process
    prints is shown like what a Python function prints."""
    stream = sys.stdout
    if type(stream) is RoutingStream:
        stream = stream.wrapped
    if stream is not None:
        stream.write(text)
