"""Error classes. Every user-facing error carries a message a user can act on."""

from __future__ import annotations

from collections.abc import Sequence

from sts_core.wording import short_text

#: How many problems an error message lists before it only counts the rest.
MAX_PROBLEMS_SHOWN = 50
#: The longest a problem's message and key path may be: the last guard against a message that
#: embeds a user's value in full (a plugin's, say); STS's own messages use ``short_repr``.
MAX_MESSAGE_LENGTH = 2000
MAX_KEY_PATH_LENGTH = 500


class STSError(Exception):
    """Base class of every error STS raises on purpose."""


class ValidationError(STSError, ValueError):
    """Input (a task, a config, a task file) is invalid.

    ``problems`` holds one ``Problem`` per finding so a caller can report all of them at once.
    """

    def __init__(self, problems: Sequence[Problem] | str, *, source: str | None = None):
        if isinstance(problems, str):
            problems = [Problem(key_path="", message=problems)]
        self.problems = list(problems)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        """The problems, one per line, each naming file, line and key path."""
        return "\n".join(self.lines())

    def lines(self, limit: int = MAX_PROBLEMS_SHOWN) -> list[str]:
        """At most ``limit`` rendered problems, then a line counting the rest."""
        lines = [problem.render(self.source) for problem in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more problem(s)")
        return lines


class Problem:
    """One finding: where it is (file, line, key path) and what was expected."""

    __slots__ = ("key_path", "line", "message")

    def __init__(self, key_path: str, message: str, line: int | None = None):
        self.key_path = short_text(key_path, MAX_KEY_PATH_LENGTH)
        self.message = short_text(message, MAX_MESSAGE_LENGTH)
        self.line = line

    def render(self, source: str | None = None) -> str:
        where = []
        if source:
            where.append(source if self.line is None else f"{source}:{self.line}")
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.key_path:
            where.append(self.key_path)
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def __repr__(self) -> str:
        return f"Problem({self.key_path!r}, {self.message!r}, line={self.line!r})"


class TaskValidationError(ValidationError):
    """A task definition is invalid."""


class ConfigError(ValidationError):
    """A configuration value is invalid."""


class TaskExistsError(STSError, KeyError):
    """A task with this name is already stored (pass ``replace=True`` to store a new version)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task exists"


class TaskNotFoundError(STSError, KeyError):
    """No task with this name is stored."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task not found"


class PluginError(STSError):
    """A plugin could not be loaded, or two plugins registered the same name."""


class SchedulerStateError(STSError, RuntimeError):
    """An operation does not fit the scheduler's state (e.g. ``start()`` twice)."""


class TaskLoadError(STSError):
    """A stored task's task type or function cannot be loaded in this process."""


class TaskStillRunningError(STSError):
    """A run did not start: calls of its task's function from earlier runs still hang in abandoned
    threads (``max_instances`` of them)."""


class BackendError(STSError):
    """The backend refused an operation (e.g. Redis out of memory): nothing was changed."""


class BackendUnavailableError(BackendError, ConnectionError):
    """The backend cannot be reached (down, wrong address, wrong password). The message says
    which address and why, never the password."""
