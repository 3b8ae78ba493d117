"""``EventRecorder``: a plugin that keeps every event the engine emits, for tests to read."""

from __future__ import annotations

from typing import Any

from sts_core.hookspecs import hookimpl  # pluggy only, which pytest has loaded already


class EventRecorder:
    """Register it with a plugin manager (``PluginManager(plugins=[("events", recorder)])``);
    ``seen`` lists the events in the order they were emitted."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl
    def handle_event(self, event: Any) -> None:
        """Keep ``event``."""
        self.seen.append(event)

    def of(self, kind: type) -> list[Any]:
        """The events seen of class ``kind``."""
        return [event for event in self.seen if isinstance(event, kind)]
