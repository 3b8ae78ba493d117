"""Logging of STS itself: the level, destination and format of the ``sts`` logger, from the config.

Only the ``sts`` logger is touched, never the root logger, so an application embedding STS
keeps its own logging. Records may carry run details as ``extra={"sts": {"task": ..., ...}}``;
the JSON format flattens them into the line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

from sts_core.errors import ConfigError, Problem

STS_LOGGER = "sts"
EXTRA_KEY = "sts"
_INSTALLED = "_sts_installed"  # marks the handler configure_logging added, so a second call replaces it
_JSON_FIELDS = ("time", "level", "logger", "message")


class TextFormatter(logging.Formatter):
    """``2026-11-27 03:37:23.123 INFO  sts.engine  message`` in UTC; tracebacks follow on their own lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s  %(message)s", "%Y-%m-%d %H:%M:%S")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).strftime(datefmt or "%Y-%m-%d %H:%M:%S")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    every key of the record's ``extra={"sts": {...}}`` mapping, and ``exc_type``/``traceback``
    when an exception is logged. A detail named like a standard field is written as ``sts_<name>``."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": created.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
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
        return json.dumps(entry, default=_json_value, ensure_ascii=False)


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
    per ``logging.output``; ``text`` or ``json`` lines per ``logging.format``. Calling it again
    replaces the handler it installed. While that handler is installed the ``sts`` logger
    does not propagate to the root logger (no duplicate lines). Raises ``ConfigError`` when
    the log file cannot be opened.
    """
    handler = _handler(config)
    handler.setFormatter(JsonFormatter() if config.get("logging.format") == "json" else TextFormatter())
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
