"""A run's captured output, bounded so a chatty task cannot exhaust memory."""

from __future__ import annotations


class BoundedOutput:
    """Keeps the first ``limit`` characters written, then notes how much was dropped."""

    __slots__ = ("_dropped", "_limit", "_parts", "_size")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0
        self._dropped = 0

    def write(self, text: str) -> None:
        """Append ``text`` (what does not fit is counted, not kept)."""
        room = self._limit - self._size
        if room <= 0:
            self._dropped += len(text)
            return
        if len(text) > room:
            self._dropped += len(text) - room
            text = text[:room]
        self._parts.append(text)
        self._size += len(text)

    def getvalue(self) -> str | None:
        """The captured text, or None when nothing was written."""
        if not self._parts and not self._dropped:
            return None
        text = "".join(self._parts)
        if self._dropped:
            text += f"\n[... {self._dropped} more characters not kept (executor.output_limit)]"
        return text
