"""The wording of user-facing messages: a "did you mean" for a near miss, a user's value shown
short, and a list of allowed names. Messages name what was expected and show what was given,
never in full: a value may be huge or hostile.
"""

from __future__ import annotations

import difflib
import math
import reprlib
from collections.abc import Iterable
from typing import Any

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
