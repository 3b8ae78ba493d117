"""Block Kit pieces that always respect Slack's limits.

Slack rejects a whole message (HTTP 400 ``invalid_blocks``) when one text is too long, so
every constructor here truncates instead: lengths are counted in UTF-16 code units (what
Slack counts; never fewer than Python's characters), ``&``, ``<`` and ``>`` are escaped in
mrkdwn text *after* cutting (so no ``&amp;`` is ever cut in half), and a code block keeps
its closing fence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Slack's limits (https://docs.slack.dev/reference/block-kit/blocks).
MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
MAX_BUTTON_TEXT = 75
MAX_URL = 3000
#: The fallback ``text`` is capped well below Slack's 40,000 so a notification stays readable.
MAX_FALLBACK = 3000

ELLIPSIS = "…"
_FENCE = "```"
_BROKEN_FENCE = "`\u200b`\u200b`"  # what ``` inside a code block becomes, so it cannot end the block early


def slack_length(text: str) -> int:
    """The length Slack counts: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def escape(text: str) -> str:
    """``text`` with ``&``, ``<`` and ``>`` escaped as Slack mrkdwn requires."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slice(text: str, units: int, *, tail: bool) -> str:
    """The longest head (or tail) of ``text`` that is at most ``units`` long."""
    if units <= 0:
        return ""
    if slack_length(text) <= units:
        return text
    low, high = 0, min(len(text), units)
    while low < high:
        middle = (low + high + 1) // 2
        piece = text[-middle:] if tail else text[:middle]
        if slack_length(piece) <= units:
            low = middle
        else:
            high = middle - 1
    return (text[-low:] if low else "") if tail else text[:low]


def fit(text: str, limit: int, *, tail: bool = False) -> str:
    """``text`` cut to ``limit`` with an ellipsis where it was cut (at the end, or at the
    start when ``tail`` keeps the end). Use for plain text; see ``mrkdwn`` for mrkdwn."""
    if slack_length(text) <= limit:
        return text
    piece = _slice(text, limit - len(ELLIPSIS), tail=tail)
    return ELLIPSIS + piece if tail else piece + ELLIPSIS


def mrkdwn(raw: str, limit: int, *, tail: bool = False) -> str:
    """``raw`` escaped for mrkdwn and at most ``limit`` long once escaped."""
    escaped = escape(raw)
    if slack_length(escaped) <= limit:
        return escaped
    budget = limit - len(ELLIPSIS)
    units = budget
    while True:
        piece = escape(_slice(raw, units, tail=tail))
        over = slack_length(piece) - budget
        if over <= 0:
            return ELLIPSIS + piece if tail else piece + ELLIPSIS
        units -= over


def code_block(raw: str, limit: int) -> str:
    """``raw`` as a mrkdwn code block at most ``limit`` long, keeping its end (the end of a
    traceback or an output is what explains it)."""
    inner_limit = limit - slack_length(f"{_FENCE}\n\n{_FENCE}")
    inner = mrkdwn(raw.replace(_FENCE, _BROKEN_FENCE), inner_limit, tail=True)
    return f"{_FENCE}\n{inner}\n{_FENCE}"


def plain_text(text: str, limit: int) -> dict[str, Any]:
    """A ``plain_text`` object (shown literally: nothing to escape)."""
    return {"type": "plain_text", "text": fit(text, limit) or " ", "emoji": True}


def header(text: str) -> dict[str, Any]:
    """A header block (plain text, at most 150)."""
    return {"type": "header", "text": plain_text(text, MAX_HEADER)}


def section(text: str) -> dict[str, Any]:
    """A section block from mrkdwn text already built within ``MAX_SECTION_TEXT``."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": _bounded(text, MAX_SECTION_TEXT)}}


def fields(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A section of ``*label*\\nvalue`` fields (at most 10); ``value`` is raw text."""
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": labelled(label, value, MAX_FIELD_TEXT)} for label, value in pairs[:MAX_FIELDS]
        ],
    }


def labelled(label: str, raw: str, limit: int) -> str:
    """``*label*`` and the escaped ``raw`` on the next line, within ``limit``."""
    head = f"*{escape(label)}*\n"
    return head + mrkdwn(raw, limit - slack_length(head))


def context(texts: Sequence[str]) -> dict[str, Any]:
    """A context block of mrkdwn texts already escaped (at most 10)."""
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": _bounded(t, MAX_FIELD_TEXT)} for t in texts[:MAX_CONTEXT_ELEMENTS]],
    }


def link_button(label: str, url: str) -> dict[str, Any] | None:
    """An actions block with one link button, or None when the URL is too long for Slack."""
    if not url or len(url) > MAX_URL:
        return None
    return {"type": "actions", "elements": [{"type": "button", "text": plain_text(label, MAX_BUTTON_TEXT), "url": url}]}


def message(text: str, blocks: Sequence[dict[str, Any] | None], **extra: Any) -> dict[str, Any]:
    """The webhook payload: fallback ``text`` (mrkdwn, escaped by the caller), at most 50
    blocks (Nones dropped), and ``extra`` keys whose value is not None (username, icon)."""
    kept = [block for block in blocks if block is not None][:MAX_BLOCKS]
    payload: dict[str, Any] = {"text": _bounded(text, MAX_FALLBACK), "blocks": kept}
    payload.update({key: value for key, value in extra.items() if value is not None})
    return payload


def _bounded(text: str, limit: int) -> str:
    """Last-resort cut of already escaped mrkdwn: never inside an ``&...;`` entity."""
    if slack_length(text) <= limit:
        return text
    piece = _slice(text, limit - len(ELLIPSIS), tail=False)
    amp = piece.rfind("&", max(0, len(piece) - 5))
    if amp != -1 and ";" not in piece[amp:]:
        piece = piece[:amp]
    return piece + ELLIPSIS
