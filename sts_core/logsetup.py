"""Logging of STS itself: the level, destination and format of the ``sts`` logger, from the config.

Only the ``sts`` logger is touched, never the root logger, so an application embedding STS
keeps its own logging. Records may carry run details as ``extra={"sts": {"task": ..., ...}}``;
the JSON format flattens them into the line.

Times are shown in the config's ``timezone`` with their offset (``Z`` when it is zero). A log
line is one line whatever a message holds: messages often carry values from users (a task
name, a request path, an error text), so control characters in them are written as escapes
(``\\n``, ``\\x1b``) and can neither forge a line nor drive the terminal showing the log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from sts_core.errors import ConfigError, Problem

STS_LOGGER = "sts"
EXTRA_KEY = "sts"
_INSTALLED = "_sts_installed"  # marks the handler configure_logging added, so a second call replaces it
_JSON_FIELDS = ("time", "level", "logger", "message")


#: Characters written as escapes: C0 and C1 controls and DEL (a newline, ``ESC``), the Unicode line
#: and paragraph separators (line breaks to ``str.splitlines``) and the bidirectional overrides and
#: isolates (they reorder what a terminal shows).
_OTHER_UNSAFE = r"\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE_CHARS = re.compile(rf"[\x00-\x1f{_OTHER_UNSAFE}]")
_UNSAFE_BUT_NEWLINE = re.compile(rf"[\x00-\x09\x0b-\x1f{_OTHER_UNSAFE}]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with its control characters written as escapes: ``\\n``, ``\\r``, ``\\t``, ``\\x1b``,
    ``\\u2028``; other text (a backslash too) is left as it is. With ``keep_newlines`` a newline
    stays a newline (for a traceback, which is meant to span lines)."""
    pattern = _UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE_CHARS
    return pattern.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def format_time(created: float, msecs: float, zone: tzinfo, separator: str = " ") -> str:
    """``created`` (a Unix time) in ``zone`` to the millisecond, with its UTC offset: ``Z`` when the
    offset is zero, else ``+01:00``. ``2026-12-08 02:14:03.120+01:00``; ISO 8601 with ``T``."""
    moment = datetime.fromtimestamp(int(created), zone)
    return moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S") + f".{int(msecs):03d}" + offset_text(moment)


def offset_text(moment: datetime) -> str:
    """The UTC offset of an aware ``moment`` as a timestamp ends: ``Z`` when it is zero, else ``+01:00``."""
    offset = moment.strftime("%z")
    return "Z" if offset in ("", "+0000") else f"{offset[:3]}:{offset[3:]}"


class TextFormatter(logging.Formatter):
    """``2026-11-27 03:37:23.123Z INFO  sts.engine  message``, the time in ``zone`` with its offset
    (``Z`` for UTC). The line's control characters are escaped (a message is one line); a
    traceback follows on its own lines, with control characters other than newlines escaped."""

    def __init__(self, zone: tzinfo = UTC) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s  %(message)s")
        self.zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return format_time(record.created, record.msecs, self.zone)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return escape_controls(super().formatException(ei), keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return escape_controls(super().formatStack(stack_info), keep_newlines=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601 in ``zone`` with its offset, ``Z`` for UTC),
    ``level``, ``logger``, ``message``, every key of the record's ``extra={"sts": {...}}`` mapping,
    and ``exc_type``/``traceback`` when an exception is logged. A detail named like a standard
    field is written as ``sts_<name>``. Every control character is a JSON escape (``\\u001b``)."""

    def __init__(self, zone: tzinfo = UTC) -> None:
        super().__init__()
        self.zone = zone

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": format_time(record.created, record.msecs, self.zone, "T"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        details = getattr(record, EXTRA_KEY, None)
        if isinstance(details, Mapping):
            for key, value in details.items():
                name = str(key)
                entry[f"sts_{name}" if name in _JSON_FIELDS else name] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # json.dumps escapes C0 controls but leaves DEL, C1 controls and U+2028 as they are
        return _UNSAFE_CHARS.sub(_json_escape, json.dumps(entry, default=_json_value, ensure_ascii=False))


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


class StandardStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stdout`` or ``sys.stderr`` as it is when a record is emitted.

    Looking the stream up late matters: pytest's capture and the python task type replace
    ``sys.stdout`` after logging is configured.
    """

    def __init__(self, stream_name: str) -> None:
        logging.Handler.__init__(self)  # StreamHandler.__init__ would pin today's stream
        self.stream_name = stream_name

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return getattr(sys, self.stream_name)


def _handler(config: Any) -> logging.Handler:
    output = config.get("logging.output", "stdout")
    if output in ("stdout", "stderr"):
        return StandardStreamHandler(output)
    log_file = config.get("log_file", "sts.log")
    try:
        return logging.FileHandler(log_file, mode="a", encoding="utf-8")
    except OSError as exc:
        message = f"cannot open {log_file!r} to append logs (logging.output is file): {exc.strerror or exc}"
        raise ConfigError([Problem("log_file", message)], source=getattr(config, "source", None)) from None


def configure_logging(config: Any) -> None:
    """Set up the ``sts`` logger from ``config`` (a ``sts_core.config.Config``).

    Level from ``logging.loglevel``; one handler to stdout, stderr or ``log_file`` (appended)
    per ``logging.output``; ``text`` or ``json`` lines per ``logging.format``, times in
    ``timezone``. Calling it again
    replaces the handler it installed. While that handler is installed the ``sts`` logger
    does not propagate to the root logger (no duplicate lines). Raises ``ConfigError`` when
    the log file cannot be opened.
    """
    handler = _handler(config)
    zone = ZoneInfo(str(config.get("timezone", "UTC")))
    handler.setFormatter(JsonFormatter(zone) if config.get("logging.format") == "json" else TextFormatter(zone))
    setattr(handler, _INSTALLED, True)
    logger = logging.getLogger(STS_LOGGER)
    _remove_installed(logger)
    logger.addHandler(handler)
    logger.setLevel(str(config.get("logging.loglevel", "INFO")).upper())
    logger.propagate = False


def reset_logging() -> None:
    """Remove the handler ``configure_logging`` installed and let ``sts`` records propagate again."""
    logger = logging.getLogger(STS_LOGGER)
    if _remove_installed(logger):
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def _remove_installed(logger: logging.Logger) -> bool:
    installed = [handler for handler in logger.handlers if getattr(handler, _INSTALLED, False)]
    for handler in installed:
        logger.removeHandler(handler)
        handler.close()
    return bool(installed)
