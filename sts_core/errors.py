"""Error classes. Every user-facing error carries a message a user can act on."""

from __future__ import annotations

import difflib
import math
import reprlib
from collections.abc import Iterable, Sequence
from typing import Any

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


#: Longest word a "did you mean" is looked up for: matching costs the product of the lengths.
_MAX_HINT_WORD = 100


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest candidate, or an empty string.

    Only a genuinely close name is suggested (case aside): a typo (``evry``, ``timout``, ``cdw``),
    a prefix (``func``, ``retry``), an abbreviation (``cmd``) or the last part of a path name
    (``Berlin`` for ``Europe/Berlin``); never a merely similar short word (``env`` is not ``end``).
    """
    match = closest_name(word, candidates)
    return f" (did you mean {match!r}?)" if match is not None else ""


def closest_name(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``did_you_mean`` would suggest for ``word``, or None."""
    if not isinstance(word, str) or not word or len(word) > _MAX_HINT_WORD:
        return None
    by_folded: dict[str, str] = {}
    for candidate in candidates:
        if isinstance(candidate, str):
            by_folded.setdefault(candidate.casefold(), candidate)
    folded = word.casefold()
    if folded in by_folded:
        return by_folded[folded]
    for close in difflib.get_close_matches(folded, list(by_folded), n=5, cutoff=0.6):
        if _is_close(folded, close):
            return by_folded[close]
    return None


def _is_close(word: str, candidate: str) -> bool:
    """Whether ``candidate`` (already about 60 % similar, both case-folded) is a likely meaning."""
    if difflib.SequenceMatcher(None, word, candidate).ratio() >= 0.75:
        return True
    return (word[:3] == candidate[:3] or candidate.endswith("/" + word) or _abbreviates(word, candidate)
            or _swaps_two(word, candidate))


def _swaps_two(word: str, candidate: str) -> bool:
    """``cdw`` is ``cwd`` with two neighbouring letters swapped."""
    if len(word) != len(candidate):
        return False
    differ = [i for i, (a, b) in enumerate(zip(word, candidate, strict=True)) if a != b]
    if len(differ) != 2 or differ[1] != differ[0] + 1:
        return False
    first = differ[0]
    return word[first] == candidate[first + 1] and word[first + 1] == candidate[first]


def _abbreviates(word: str, candidate: str) -> bool:
    """``cmd`` abbreviates ``command``: same first letter, then its letters in order."""
    if len(word) < 3 or word[0] != candidate[0]:
        return False
    rest = iter(candidate[1:])
    return all(letter in rest for letter in word[1:])


#: How long ``short_repr`` lets a value's text be.
SHORT_REPR_LIMIT = 100
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = SHORT_REPR_LIMIT
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = 8


def short_text(text: str, limit: int = SHORT_REPR_LIMIT) -> str:
    """``text`` cut to at most ``limit`` characters (``...`` marks the cut), for key paths and names."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: Any, limit: int = SHORT_REPR_LIMIT) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, for error messages that show a user's value.

    The cost is bounded too: only the first items of long or deeply nested containers are
    looked at (a YAML alias bomb shows as ``[[['lol', ...], ...], ...]``), and an integer too
    long to print is described by its number of digits.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * limit:
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return short_text(_REPR.repr(value), limit)  # reprlib survives a failing __repr__


def one_of(names: Iterable[str]) -> str:
    """Render a sorted list of allowed names for an error message."""
    names = sorted(names)
    return ", ".join(repr(n) for n in names) if names else "(none installed)"
