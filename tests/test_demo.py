"""The demo a newcomer runs first: ``sts run configs/task.yaml`` from the repository root.

The demo runs once (six seconds, in a subprocess) and each test checks one thing the demo
promises to show. The cron task and the 15s/20s interval tasks need longer; they are not
waited for.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cli_helpers import TIMESTAMP, run_sts, summary_table

ROOT = Path(__file__).resolve().parents[1]
TASK_FILE = "configs/task.yaml"


def sts(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``sts ARGS`` from the repository root."""
    return run_sts(*args, cwd=ROOT, timeout=60)


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    """The finished demo, run for six seconds."""
    return sts("run", TASK_FILE, "--for", "6s")


def run_lines(output: str, task: str) -> list[str]:
    """The run log lines of ``task``, in order, without timestamp, level, logger and symbol."""
    pattern = re.compile(rf"^{TIMESTAMP} \w+\s+sts\.run\s+\S+ ({re.escape(task)} attempt .*)$", re.MULTILINE)
    return pattern.findall(output)


def test_the_demo_task_file_validates():
    result = sts("validate", TASK_FILE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{TASK_FILE}: OK, 9 task(s)"


def test_the_demo_loads_every_task_runs_and_stops_cleanly(demo):
    assert demo.returncode == 0, demo.stderr
    assert "Traceback" not in demo.stderr + demo.stdout
    assert demo.stdout.startswith(f"Loaded 9 task(s) from {TASK_FILE}")
    assert "STS started (backend memory, 9 task(s)" in demo.stdout
    assert re.search(rf"^{TIMESTAMP} INFO\s+sts\.scheduler\s+STS stopped$", demo.stdout, re.MULTILINE)


def test_the_interval_task_heartbeat_runs_and_prints(demo):
    lines = run_lines(demo.stdout, "heartbeat")
    assert lines[0] == "heartbeat attempt 1 started"
    assert re.fullmatch(r"heartbeat attempt 1 succeeded in \S+", lines[1]), lines[1]
    assert re.search(r"^heartbeat at \d\d:\d\d:\d\d$", demo.stdout, re.MULTILINE)


def test_flaky_upload_fails_twice_then_succeeds_on_attempt_3_with_growing_delays(demo):
    lines = run_lines(demo.stdout, "flaky_upload")
    assert [line.split(" in ")[0].split(":")[0] for line in lines] == [
        "flaky_upload attempt 1 started",
        "flaky_upload attempt 1 failed",
        "flaky_upload attempt 2 started",
        "flaky_upload attempt 2 failed",
        "flaky_upload attempt 3 started",
        "flaky_upload attempt 3 succeeded",
    ]
    assert "ConnectionError: upstream not ready (call 1 of 3); attempt 2 at" in lines[1]
    assert "ConnectionError: upstream not ready (call 2 of 3); attempt 3 at" in lines[3]
    # retry_delay 1s, backoff 2: attempt 2 one second after attempt 1, attempt 3 two seconds later
    starts = [_seconds(demo.stdout, f"flaky_upload attempt {n} started") for n in (1, 2, 3)]
    first_delay, second_delay = (starts[1] - starts[0]) % 86400, (starts[2] - starts[1]) % 86400
    assert 0.9 <= first_delay <= 1.6
    assert 1.9 <= second_delay <= 2.9


def _seconds(output: str, text: str) -> float:
    match = re.search(rf"^\d{{4}}-\d\d-\d\d (\d\d):(\d\d):(\d\d\.\d{{3}})\S* .*{re.escape(text)}", output, re.MULTILINE)
    assert match, f"{text!r} not logged"
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_slow_query_is_cancelled_and_recorded_as_timed_out(demo):
    lines = run_lines(demo.stdout, "slow_query")
    assert lines[0] == "slow_query attempt 1 started"
    assert re.fullmatch(
        r"slow_query attempt 1 timed_out in 2\.\ds: TimeoutError: did not finish within its timeout of 2s", lines[1]
    ), lines[1]


def test_load_warehouse_fails_and_publish_is_skipped_because_its_parent_failed(demo):
    load = run_lines(demo.stdout, "load_warehouse")
    assert load[0] == "load_warehouse attempt 1 started"
    assert re.fullmatch(r"load_warehouse attempt 1 failed in \S+: RuntimeError: warehouse is read-only today", load[1])
    assert run_lines(demo.stdout, "publish") == ["publish attempt 1 skipped (upstream failed: load_warehouse)"]
    assert "published" not in demo.stdout


def test_the_run_summary_counts_each_outcome(demo):
    summary = summary_table(demo.stdout)
    # The cron task fires at the start of each minute: in six seconds it may or may not.
    assert summary.pop("minute_report", {"succeeded": 1})["succeeded"] == 1
    assert set(summary) == {"flaky_upload", "heartbeat", "load_warehouse", "publish", "slow_query"}
    assert summary["flaky_upload"]["succeeded"] == 1 and summary["flaky_upload"]["retrying"] == 2
    assert summary["heartbeat"]["succeeded"] == 1
    assert summary["load_warehouse"]["failed"] == 1
    assert summary["publish"]["skipped"] == 1
    assert summary["slow_query"]["timed_out"] == 1
    nonzero = {task: {state for state, n in counts.items() if n} for task, counts in summary.items()}
    assert nonzero == {
        "flaky_upload": {"succeeded", "retrying"},
        "heartbeat": {"succeeded"},
        "load_warehouse": {"failed"},
        "publish": {"skipped"},
        "slow_query": {"timed_out"},
    }
