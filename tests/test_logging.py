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
from sts_core.run import RunState

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}(?:Z|[+-]\d\d:\d\d) (?P<rest>.*)$")
WHEN = 1795750643.123  # 2026-11-27T03:37:23.123Z


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


def emit_at(created: float, message: str = "m", *args: Any) -> None:
    """Log ``message`` as if at the Unix time ``created``."""
    record = logging.LogRecord("sts.x", logging.INFO, __file__, 1, message, args or None, None)
    record.created, record.msecs = created, round(created % 1 * 1000)
    logging.getLogger("sts").handle(record)


def test_text_times_are_utc_marked_z_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    configured()
    emit_at(WHEN)
    assert capsys.readouterr().out == "2026-11-27 03:37:23.123Z INFO  sts.x  m\n"


@pytest.mark.parametrize(("zone", "shown"), [
    ("Europe/Berlin", "2026-11-27 04:37:23.123+01:00"),
    ("America/St_Johns", "2026-11-27 00:07:23.123-03:30"),
    ("Europe/London", "2026-11-27 03:37:23.123Z"),  # zero offset in winter
])
def test_text_times_follow_the_configured_timezone_with_their_offset(
        capsys: pytest.CaptureFixture[str], zone: str, shown: str) -> None:
    configure_logging(Config({"timezone": zone}))
    emit_at(WHEN)
    assert capsys.readouterr().out == f"{shown} INFO  sts.x  m\n"


def test_the_offset_follows_daylight_saving_time(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Config({"timezone": "Europe/Berlin"}))
    emit_at(WHEN - 150 * 86400)  # late June
    assert capsys.readouterr().out.startswith("2026-06-30 05:37:23.123+02:00 INFO")


def test_json_times_follow_the_configured_timezone_with_their_offset(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Config({"timezone": "Europe/Berlin", "logging": {"format": "json"}}))
    emit_at(WHEN)
    entry = json.loads(capsys.readouterr().out)
    assert entry["time"] == "2026-11-27T04:37:23.123+01:00"
    assert datetime.fromisoformat(entry["time"]).timestamp() == pytest.approx(WHEN)


FORGED = "/tasks/x\x1b[2J\x1b]0;pwned\x07\r\n2026-11-27 03:37:23.123Z ERROR sts.api  forged\tline\u2028\x9b31m\u202e"


def test_control_characters_in_text_messages_and_arguments_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    configured()
    logging.getLogger("sts.api").warning("GET %s failed", FORGED)
    logging.getLogger("sts.engine").warning(FORGED)  # a message built by the caller, any sts logger
    out = capsys.readouterr().out
    escaped = ("/tasks/x\\x1b[2J\\x1b]0;pwned\\x07\\r\\n2026-11-27 03:37:23.123Z ERROR sts.api  forged\\tline"
               "\\u2028\\x9b31m\\u202e")
    assert out.split("\n") == [out.split("\n")[0], out.split("\n")[1], ""]
    assert out.split("\n")[0].endswith(f"WARNING sts.api  GET {escaped} failed")
    assert out.split("\n")[1].endswith(f"WARNING sts.engine  {escaped}")
    assert len(out.splitlines()) == 2 and not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u202e]", out)


def test_a_backslash_is_left_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    configured()
    logging.getLogger("sts").warning(r"C:\tasks\new %s", "é ✔")
    assert capsys.readouterr().out.endswith("WARNING sts  C:\\tasks\\new é ✔\n")


def test_a_traceback_stays_on_its_own_lines_with_escape_sequences_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    configured()
    try:
        raise ValueError("bad\x1b[31m value\nsecond line")
    except ValueError:
        logging.getLogger("sts.worker").exception("crashed at %s", "x\ny")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("ERROR sts.worker  crashed at x\\ny")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-2:] == ["ValueError: bad\\x1b[31m value", "second line"]


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


def test_json_lines_escape_every_control_character(capsys: pytest.CaptureFixture[str]) -> None:
    """json.dumps escapes C0 controls itself, but leaves DEL, the C1 controls (0x9b is a CSI) and
    U+2028 (a line break to str.splitlines) as they are."""
    configured(format="json")
    logging.getLogger("sts.api").warning("GET %s failed", FORGED, extra={"sts": {"path": FORGED}})
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202e]", out.rstrip("\n"))
    entry = json.loads(out)
    assert (entry["message"], entry["path"]) == (f"GET {FORGED} failed", FORGED)


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
