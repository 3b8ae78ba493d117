"""The quick start from the README, run exactly as written in a separate Python process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import read_until

QUICK_START = '''\
from sts.scheduler import TaskScheduler
from sts.task import Task
from sts.config import Config

task = Task(name='basic_task', function=lambda: print("Running basic task!"))
scheduler = TaskScheduler(config=Config())
scheduler.add_task(task)
scheduler.start()
'''


def _start(tmp_path: Path, source: str) -> subprocess.Popen[str]:
    script = tmp_path / "quick_start.py"
    script.write_text(source)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_quick_start_runs_its_task_stays_up_and_stops_gracefully_on_a_signal(tmp_path, signum):
    process = _start(tmp_path, QUICK_START)
    try:
        read_until(process, "Running basic task!")
        time.sleep(0.3)
        assert process.poll() is None, "the process must stay up while the scheduler runs"
        process.send_signal(signum)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "STS stopped" in out


def test_stop_lets_the_script_exit(tmp_path):
    source = QUICK_START + "import time\ntime.sleep(0.5)\nscheduler.stop()\nprint('after stop')\n"
    process = _start(tmp_path, source)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Running basic task!" in out and "after stop" in out


def test_scheduled_sync_tasks_keep_running_after_the_script_reaches_its_end(tmp_path):
    source = QUICK_START.replace(
        "task = Task(name='basic_task', function=lambda: print(\"Running basic task!\"))",
        "task = Task(name='tick', function=lambda: print('tick', flush=True), every='0.2s')",
    )
    process = _start(tmp_path, source)
    try:
        for _ in range(3):
            read_until(process, "succeeded")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "cannot schedule new futures" not in out + err


def test_a_second_signal_interrupts_a_hung_sync_function_and_the_process_exits(tmp_path):
    source = QUICK_START.replace(
        "task = Task(name='basic_task', function=lambda: print(\"Running basic task!\"))",
        "import time\ntask = Task(name='hung', function=lambda: time.sleep(60))",
    )
    process = _start(tmp_path, source)
    try:
        read_until(process, "hung attempt 1 started")
        # The script's end, not the few milliseconds before start() returns, where a SIGINT stops
        # the scheduler and then reaches the script as KeyboardInterrupt (test_blocking_signals.py).
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert time.monotonic() - started < 10
    assert "hung attempt 1 interrupted" in out


def test_after_a_signal_stopped_the_scheduler_the_next_signal_does_what_it_did_before(tmp_path):
    source = QUICK_START + (
        "scheduler.wait()\nprint('scheduler stopped', flush=True)\nimport time\ntime.sleep(30)\n"
    )
    process = _start(tmp_path, source)
    try:
        read_until(process, "Running basic task!")
        process.send_signal(signal.SIGTERM)
        read_until(process, "scheduler stopped")
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGTERM
