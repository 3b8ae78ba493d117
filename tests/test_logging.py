"""Specification of STS's own logging: the ``sts`` logger's level, destination and format."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sts_core.config import Config
from sts_core.errors import ConfigError
from sts_core.logsetup import configure_logging, reset_logging
from sts_core.model import RunState

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (?P<rest>.*)$")


@pytest.fixture(autouse=True)
def restore_sts_logger() -> Iterator[None]:
    """Each test starts and ends with the ``sts`` logger as nobody configured it."""
    reset_logging()
    yield
    reset_logging()


def configured(**logging_section: Any) -> Config:
    config = Config({"logging": logging_section})
    configure_logging(config)
    return config


def test_text_lines_have_time_level_logger_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    configured()
    logging.getLogger("sts.engine").info("run %s started", "r1")
    logging.getLogger("sts.engine").warning("slow")
    lines = capsys.readouterr().out.splitlines()
    rests = [TEXT_LINE.match(line).group("rest") for line in lines]  # type: ignore[union-attr]
    assert rests == ["INFO  sts.engine  run r1 started", "WARNING sts.engine  slow"]


def test_text_times_are_utc(capsys: pytest.CaptureFixture[str]) -> None:
    configured()
    record = logging.LogRecord("sts.x", logging.INFO, __file__, 1, "m", None, None)
    record.created, record.msecs = 1795750643.123, 123.0  # 2026-11-27T03:37:23.123Z
    logging.getLogger("sts").handle(record)
    assert capsys.readouterr().out == "2026-11-27 03:37:23.123 INFO  sts.x  m\n"


def test_the_level_comes_from_the_config_in_any_case(capsys: pytest.CaptureFixture[str]) -> None:
    configured(loglevel="warning")
    logging.getLogger("sts.engine").info("hidden")
    logging.getLogger("sts.engine").error("shown")
    out = capsys.readouterr().out
    assert "hidden" not in out
    assert "ERROR sts.engine  shown" in out
    configured(loglevel="DEBUG")
    logging.getLogger("sts.engine").debug("detail")
    assert "DEBUG sts.engine  detail" in capsys.readouterr().out


def test_json_lines_flatten_the_run_details(capsys: pytest.CaptureFixture[str]) -> None:
    configured(format="json")
    details = {
        "task": "backup",
        "run_id": "r-1",
        "attempt": 2,
        "state": RunState.FAILED,
        "error_type": "OSError",
        "error_message": "disk full",
        "duration": 1.5,
        "scheduled_for": datetime(2026, 1, 1),
    }
    logging.getLogger("sts.worker").error("run failed", extra={"sts": details})
    entry = json.loads(capsys.readouterr().out)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "sts.worker"
    assert entry["message"] == "run failed"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert datetime.fromisoformat(entry["time"]).utcoffset().total_seconds() == 0
    expected = {**details, "state": "failed", "scheduled_for": "2026-01-01T00:00:00"}
    assert {key: entry[key] for key in details} == expected


def test_json_details_never_replace_the_standard_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configured(format="json")
    logging.getLogger("sts").info("real", extra={"sts": {"message": "fake", "level": "x"}})
    entry = json.loads(capsys.readouterr().out)
    assert (entry["message"], entry["level"]) == ("real", "INFO")
    assert (entry["sts_message"], entry["sts_level"]) == ("fake", "x")


def test_json_lines_carry_the_exception(capsys: pytest.CaptureFixture[str]) -> None:
    configured(format="json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("sts.worker").exception("crashed")
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    entry = json.loads(out)
    assert entry["exc_type"] == "ValueError"
    assert "ValueError: boom" in entry["traceback"]


def test_output_stderr_writes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configured(output="stderr")
    logging.getLogger("sts").warning("to stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "WARNING sts  to stderr" in captured.err


def test_output_file_appends_to_log_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "sts.log"
    log_file.write_text("earlier line\n", encoding="utf-8")
    config = Config({"logging": {"output": "file", "format": "json"}, "log_file": str(log_file)})
    configure_logging(config)
    logging.getLogger("sts.engine").info("to file", extra={"sts": {"task": "t"}})
    reset_logging()  # closes the file
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "earlier line"
    assert json.loads(lines[1])["task"] == "t"
    assert capsys.readouterr().out == ""


def test_a_log_file_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    config = Config({"logging": {"output": "file"}, "log_file": str(tmp_path / "missing" / "sts.log")})
    with pytest.raises(ConfigError, match=r"log_file: cannot open .*missing/sts.log.* \(logging.output is file\)"):
        configure_logging(config)


def test_configuring_twice_replaces_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configured()
    configured(format="json")
    logging.getLogger("sts").info("once")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "once"
    assert len(logging.getLogger("sts").handlers) == 1


def test_stdout_is_looked_up_when_a_record_is_emitted(monkeypatch: pytest.MonkeyPatch) -> None:
    configured()
    replacement = io.StringIO()
    monkeypatch.setattr("sys.stdout", replacement)
    logging.getLogger("sts").info("late lookup")
    assert "INFO  sts  late lookup" in replacement.getvalue()


def test_only_the_sts_logger_is_configured_and_it_stops_propagating_while_configured() -> None:
    root_handlers = list(logging.getLogger().handlers)
    sts_logger = logging.getLogger("sts")
    assert sts_logger.propagate
    configured()
    assert not sts_logger.propagate
    assert logging.getLogger().handlers == root_handlers
    reset_logging()
    assert sts_logger.propagate
    assert sts_logger.handlers == []


def test_handlers_added_by_others_are_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    theirs = logging.StreamHandler(io.StringIO())
    sts_logger = logging.getLogger("sts")
    sts_logger.addHandler(theirs)
    try:
        configured()
        configured()
        assert theirs in sts_logger.handlers
        assert len(sts_logger.handlers) == 2
    finally:
        sts_logger.removeHandler(theirs)
