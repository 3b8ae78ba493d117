"""Reading the engine-resolved settings a run is executed with (``ExecutionContext.settings``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_KILL_GRACE = 5.0


def kill_grace(settings: Mapping[str, Any]) -> float:
    """Seconds between SIGTERM and SIGKILL when a run's processes are stopped."""
    value = settings.get("kill_grace")
    return DEFAULT_KILL_GRACE if value is None else float(value)


def executor(settings: Mapping[str, Any], chosen: str | None = None) -> str:
    """``"thread"`` or ``"process"``: the task's ``executor`` option when ``chosen``, else the
    config's ``executor.type``, else ``"thread"``."""
    return chosen or settings.get("executor") or "thread"
