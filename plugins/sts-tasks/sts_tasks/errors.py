"""The exceptions a run of a standard task type fails with."""

from __future__ import annotations

import contextlib
import signal


class CommandFailed(Exception):
    """A shell task's command ended with a non-zero exit status.

    ``exit_status`` is the status the command exited with; a command killed by a signal has
    the negative signal number (``-9`` for SIGKILL), as ``subprocess`` reports it.
    """

    def __init__(self, exit_status: int) -> None:
        self.exit_status = exit_status
        super().__init__(exit_status)

    def __str__(self) -> str:
        text = f"exit status {self.exit_status}"
        if self.exit_status < 0:
            with contextlib.suppress(ValueError):
                text += f" (killed by {signal.Signals(-self.exit_status).name})"
        return text


class RemoteError(Exception):
    """A function run by the process executor raised in the child process.

    ``str()`` is ``"Type: message"`` as the child saw it; ``remote_type`` and
    ``remote_message`` hold the parts and ``remote_traceback`` the child's formatted
    traceback (also attached as ``__cause__``, so a printed traceback shows it).
    """

    def __init__(self, remote_type: str, remote_message: str, remote_traceback: str = "") -> None:
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        super().__init__(remote_type, remote_message)

    def __str__(self) -> str:
        return f"{self.remote_type}: {self.remote_message}" if self.remote_message else self.remote_type


class RemoteTraceback(Exception):
    """Carries the child's traceback text as the ``__cause__`` of a ``RemoteError``."""

    def __str__(self) -> str:
        return f"\n\nTraceback in the child process:\n{self.args[0] if self.args else ''}"
