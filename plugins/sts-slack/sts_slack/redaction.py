"""Keep webhook URLs out of every message: they are secrets (whoever has one can post).

``redact_url`` renders a URL for an error message (scheme and host only). ``SECRETS`` holds
the configured URLs of this process, and ``RedactingFilter`` replaces them in log records of
the loggers it is installed on: ``sts.slack`` and the loggers slack_sdk's ``WebhookClient``
writes to (it logs the full URL at DEBUG, and in some error messages). These two are the
plugin's only process-wide state, on purpose: loggers are process-wide and a log record does
not say which scheduler wrote it, so every scheduler's URLs are masked in every record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

#: What a secret is replaced with.
MASK = "***"
#: The loggers the filter is installed on. A logger's filters apply only to records created on
#: that very logger (not to its children's), so the client's own logger is named explicitly.
FILTERED_LOGGERS = ("sts.slack", "slack_sdk", "slack_sdk.webhook", "slack_sdk.webhook.client")
# Shorter fragments than this are not treated as secrets (they would mask ordinary words).
_MIN_SECRET = 8


def redact_url(url: object) -> str:
    """``https://hooks.slack.com/***`` for an http(s) URL with a host, else ``***``."""
    if not isinstance(url, str):
        return MASK
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return MASK
    if parts.scheme.lower() not in ("http", "https") or not host:
        return MASK
    where = f"{host}:{port}" if port else host
    return f"{parts.scheme.lower()}://{where}/{MASK}"


class SecretRegistry:
    """The secrets of this process; thread-safe. A URL registers itself and its path (the path
    alone is what identifies a Slack webhook, and some errors quote only that part)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, urls: Iterable[str | None]) -> None:
        """Remember ``urls`` (and their paths) as secrets."""
        found = set(self._secrets)
        for url in urls:
            if not url:
                continue
            found.add(url)
            try:
                parts = urlsplit(url)
            except ValueError:
                continue
            tail = parts.path + (f"?{parts.query}" if parts.query else "")
            if len(tail.strip("/")) >= _MIN_SECRET:
                found.add(tail)
        with self._lock:
            # Longest first, so a URL is replaced whole before its path is looked for.
            self._secrets = tuple(sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)


#: The webhook URLs configured in this process.
SECRETS = SecretRegistry()


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites a record's message with the secrets masked."""

    def __init__(self, secrets: SecretRegistry = SECRETS) -> None:
        super().__init__("sts-slack-redaction")
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is the logging module's to report
            return True
        redacted = self.secrets.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Format the traceback now, masked, so handlers reuse this text instead of the raw one.
            record.exc_text = self.secrets.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.secrets.redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install_filters() -> None:
    """Put the redacting filter on ``FILTERED_LOGGERS`` (once; safe to call again)."""
    for name in FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
