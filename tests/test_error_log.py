"""The central error log: with ``logging.format: json`` every run event is one indexable line
whose fields are the run record's values."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from sts_core.config import Config
from sts_core.logsetup import configure_logging, reset_logging
from sts_core.task import Task
from sts_core.testing import until


@pytest.fixture(autouse=True)
def json_logging() -> Iterator[None]:
    configure_logging(Config({"logging": {"format": "json", "loglevel": "INFO"}}))
    yield
    reset_logging()


def broken() -> None:
    raise OSError("disk full")


def fine() -> None:
    """Succeeds."""


def _run_lines(out: str) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry["logger"] == "sts.run"]


def test_every_run_event_is_one_json_line_with_the_run_record_fields(make_scheduler, clock, capsys) -> None:
    async def main() -> list[Any]:
        async with make_scheduler(logging={"format": "json", "loglevel": "INFO"}) as scheduler:
            await scheduler.add_tasks([
                Task("backup", broken, retries=1, retry_delay="5s"),
                Task("upload", fine, parent_tasks=["backup"]),
            ])
            await scheduler.start()
            # `broken` runs in a pool thread, which settle() does not wait for: wait for its outcome.
            await until(lambda: scheduler.runs("backup", state="retrying"), what="the first attempt's outcome")
            clock.advance(5)
            await clock.settle()
            await scheduler.wait_idle()
            runs = await scheduler.runs("backup") + await scheduler.runs("upload")
            await scheduler.stop()
        return runs

    runs = asyncio.run(main())
    lines = _run_lines(capsys.readouterr().out)
    assert [(e["task"], e["attempt"], e["state"]) for e in lines] == [
        ("backup", 1, "running"),
        ("backup", 1, "retrying"),
        ("backup", 2, "running"),
        ("backup", 2, "failed"),
        ("upload", 1, "skipped"),
    ]
    failed = lines[3]
    record = next(r for r in runs if r.id == failed["run_id"]).to_dict()
    assert failed["level"] == "WARNING"
    assert (failed["error_type"], failed["error_message"]) == ("OSError", "disk full")
    assert "raise OSError" in failed["traceback"]
    for key in ("attempt", "state", "fire_id", "scheduled_for", "started_at", "ended_at", "duration",
                "error_type", "error_message", "reason", "worker", "traceback"):
        assert failed[key] == record[key], key
    assert failed["task"] == record["task_name"]
    assert lines[1]["retry_at"] is not None and "traceback" in lines[1]
    assert "traceback" not in lines[0] and "traceback" not in lines[4]
    assert lines[4]["reason"] == "upstream failed: backup"
